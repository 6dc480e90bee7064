package control

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
)

// helperEnv selects the helper mode of the test binary: run as another user
// by TestUnprivilegedCaller, it talks to the socket named by the variable's
// value and prints what it got as JSON.
const helperEnv = "NYMVPN_CONTROL_TEST_HELPER_SOCKET"

// helperResult is what the helper prints.
type helperResult struct {
	UID           int    `json:"uid"`
	StatusCode    int    `json:"status_code"`
	StatusBody    string `json:"status_body"`
	ConnectCode   int    `json:"connect_code"`
	ConnectBody   string `json:"connect_body"`
	SettingsCode  int    `json:"settings_code"`
	SettingsBody  string `json:"settings_body"`
	SettingsPatch int    `json:"settings_patch_code"`
}

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(runHelper(path))
	}
	os.Exit(m.Run())
}

func runHelper(path string) int {
	c := httpClient(path)
	var res helperResult
	res.UID = os.Getuid()
	ht := &helperTB{}
	r := doRequest(ht, c, "GET", "/v1/status", "")
	res.StatusCode, res.StatusBody = r.status, string(r.body)
	r = doRequest(ht, c, "POST", "/v1/connect", `{"entry":"de"}`)
	res.ConnectCode, res.ConnectBody = r.status, string(r.body)
	r = doRequest(ht, c, "GET", "/v1/settings", "")
	res.SettingsCode, res.SettingsBody = r.status, string(r.body)
	r = doRequest(ht, c, "PATCH", "/v1/settings", `{"ipv6":false}`)
	res.SettingsPatch = r.status
	if ht.failed != "" {
		fmt.Fprintln(os.Stderr, ht.failed)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// helperTB lets doRequest run outside a test.
type helperTB struct {
	testing.TB
	failed string
}

func (h *helperTB) Helper() {}
func (h *helperTB) Fatal(args ...any) {
	h.failed = fmt.Sprint(args...)
	fmt.Fprintln(os.Stderr, "helper:", h.failed)
	os.Exit(1)
}
