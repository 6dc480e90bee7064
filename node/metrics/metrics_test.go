package metrics

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWriteParse(t *testing.T) {
	fams := []Family{
		{Name: "b_total", Help: "drops\nby reason", Type: Counter, Samples: []Sample{
			{Labels: []Label{{"reason", `mac`}}, Value: 3},
			{Labels: []Label{{"reason", "q\"x\\"}}, Value: 1.5},
		}},
		One("a", "a gauge", Gauge, 7),
		One("c", "inf", Gauge, math.Inf(1)),
	}
	var b bytes.Buffer
	if err := Write(&b, fams); err != nil {
		t.Fatal(err)
	}
	want := "# HELP a a gauge\n# TYPE a gauge\na 7\n" +
		"# HELP b_total drops\\nby reason\n# TYPE b_total counter\nb_total{reason=\"mac\"} 3\nb_total{reason=\"q\\\"x\\\\\"} 1.5\n" +
		"# HELP c inf\n# TYPE c gauge\nc +Inf\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	m, err := Parse(&b)
	if err != nil {
		t.Fatal(err)
	}
	if m["a"] != 7 || m[`b_total{reason="mac"}`] != 3 || !math.IsInf(m["c"], 1) {
		t.Errorf("parsed %v", m)
	}
}

func TestHandler(t *testing.T) {
	h := Handler(func() []Family { return []Family{One("x", "x", Counter, 1)} })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain; version=0.0.4") || !strings.Contains(w.Body.String(), "x 1\n") {
		t.Fatalf("%d %v %q", w.Code, w.Header(), w.Body.String())
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/metrics", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", w.Code)
	}
}
