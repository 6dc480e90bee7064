package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/client"
	"github.com/nymvpn/nymvpn/version"
)

func (r *runner) status(ctx context.Context, args []string) error {
	fs := r.newFlags("status")
	asJSON := fs.Bool("json", false, "print the daemon's status document as JSON")
	pos, err := r.parseFlags(fs, "[--json]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("status takes no arguments, got %q", pos[0])
	}
	rctx, cancel := request(ctx)
	defer cancel()
	st, err := r.c.Status(rctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(r.stdout, st)
	}
	printStatus(r.stdout, st, time.Now())
	return nil
}

// printStatus writes st for a person.
func printStatus(w io.Writer, st api.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	s := st.State
	state := describeState(s, now)
	if s.Kind == api.Connected {
		state = "Connected"
	}
	switch {
	case s.Mode == api.ModeMixnet && st.Settings.PrivacyProfile != "":
		state += " (mixnet mode, " + st.Settings.PrivacyProfile + " privacy profile)"
	case s.Mode != "":
		state += " (" + s.Mode + " mode)"
	}
	row("State", state)
	if s.Kind == api.Error && s.ErrorCode != "" {
		row("Error code", s.ErrorCode)
	}
	if s.Kind == api.Connecting && s.Reason != "" && !s.Retrying {
		row("Last failure", s.Reason)
	}
	if s.Entry != nil {
		row("Entry", gatewayDetail(s.Entry))
	}
	if s.Exit != nil {
		row("Exit", gatewayDetail(s.Exit))
	}
	if len(s.Addresses) > 0 {
		row("Addresses", joinAddrs(s.Addresses))
	}
	if len(s.DNS) > 0 {
		row("DNS", joinAddrs(s.DNS))
	}
	if s.Interface != "" {
		row("Interface", s.Interface)
	}
	if s.Since != nil {
		row("Since", fmt.Sprintf("%s (%s)", s.Since.Local().Format("2006-01-02 15:04:05"), roundDuration(now.Sub(*s.Since))))
	}
	if t := st.Traffic; t != nil {
		v := fmt.Sprintf("sent %s, received %s", formatBytes(t.TxBytes), formatBytes(t.RxBytes))
		if t.LastHandshake != nil {
			v += fmt.Sprintf("; last handshake %s ago", roundDuration(now.Sub(*t.LastHandshake)))
		}
		row("Traffic", v)
	}
	if m := st.Mixnet; m != nil {
		for _, r := range mixnetRows(*m) {
			row(r[0], r[1])
		}
	}
	if t := st.Tickets; t != nil {
		if t.Account {
			row("Tickets", ticketsLine(*t))
		} else {
			row("Tickets", "no account (nymvpn account create or import)")
		}
	}
	if want := string(st.Target); want != "" && want != string(s.Kind) {
		row("Asked for", want)
	}
	if st.Daemon.Version != "" {
		row("Daemon", fmt.Sprintf("nymvpnd %s (pid %d)", st.Daemon.Version, st.Daemon.PID))
	}
	for _, n := range st.Notices {
		row("Notice", n)
	}
	if st.Caller != nil && !st.Caller.CanWrite {
		row("Access", "read only (connect, disconnect and settings need root or the nymvpn group)")
	}
	tw.Flush()
}

func gatewayDetail(g *api.Gateway) string {
	s := describeGateway(g)
	if g.Endpoint != "" {
		s += ", " + g.Endpoint
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func (r *runner) watch(ctx context.Context, args []string) error {
	fs := r.newFlags("watch")
	asJSON := fs.Bool("json", false, "print each event as a JSON line")
	pos, err := r.parseFlags(fs, "[--json]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("watch takes no arguments, got %q", pos[0])
	}
	es, err := r.c.Events(ctx)
	if err != nil {
		return err
	}
	for {
		err := r.follow(ctx, es, *asJSON)
		es.Close()
		if ctx.Err() != nil {
			return nil // interrupted: the normal way to end
		}
		if !errors.Is(err, client.ErrStreamEnded) {
			return err
		}
		fmt.Fprintln(r.stderr, "nymvpn: nymvpnd ended the stream; reconnecting...")
		for {
			if es, err = r.c.Events(ctx); err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, client.ErrDaemonNotRunning) {
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
}

// follow prints es's events until it ends.
func (r *runner) follow(ctx context.Context, es *client.EventStream, asJSON bool) error {
	var shown [2]int64 // the bytes of the traffic last printed
	for {
		e, err := es.Next()
		if err != nil {
			return err
		}
		if asJSON {
			b, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("encode event: %w", err)
			}
			fmt.Fprintf(r.stdout, "%s\n", b)
			continue
		}
		// A traffic event whose bytes did not move (a mixnet tunnel's
		// ping answered, a new handshake) says nothing to a person.
		if e.Status != nil {
			shown = [2]int64{}
			if t := e.Status.Traffic; t != nil {
				shown = [2]int64{t.TxBytes, t.RxBytes}
			}
		}
		if t := e.Traffic; t != nil {
			b := [2]int64{t.TxBytes, t.RxBytes}
			if *t != (api.Traffic{}) && b == shown {
				e.Traffic = nil
			}
			shown = b
		}
		now := time.Now()
		for _, line := range describeEvent(e, now) {
			fmt.Fprintf(r.stdout, "%s %s\n", now.Format("15:04:05"), line)
		}
	}
}

// describeEvent is what changed in e, a line per part.
func describeEvent(e api.Event, now time.Time) []string {
	var lines []string
	if e.Status != nil {
		lines = append(lines, describeState(e.Status.State, now))
	}
	if e.Target != "" {
		lines = append(lines, "asked for: "+e.Target)
	}
	if e.State != nil {
		lines = append(lines, describeState(*e.State, now))
	}
	if e.Settings != nil {
		lines = append(lines, "settings: "+describeSettings(*e.Settings))
	}
	if t := e.Traffic; t != nil && *t != (api.Traffic{}) {
		lines = append(lines, fmt.Sprintf("traffic: sent %s, received %s", formatBytes(t.TxBytes), formatBytes(t.RxBytes)))
	}
	if m := e.Mixnet; m != nil && *m != (api.MixnetStats{}) {
		lines = append(lines, mixnetLine(*m))
	}
	return lines
}

func describeSettings(s api.Settings) string {
	parts := make([]string, 0, len(settingKeys))
	for _, k := range settingKeys {
		parts = append(parts, k.name+" "+k.get(s))
	}
	return strings.Join(parts, ", ")
}

func (r *runner) gateways(ctx context.Context, args []string) error {
	fs := r.newFlags("gateways")
	role := fs.String("role", "", "only gateways of this role: entry or exit")
	country := fs.String("country", "", "only gateways in this country (two letters)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := r.parseFlags(fs, "[--role entry|exit] [--country CC] [--json]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("gateways takes no arguments, got %q", pos[0])
	}
	if *role != "" && *role != "entry" && *role != "exit" {
		return usagef("gateways: --role must be entry or exit, not %q", *role)
	}
	rctx, cancel := request(ctx)
	defer cancel()
	gws, err := r.c.Gateways(rctx, *role, *country)
	if err != nil {
		return err
	}
	if *asJSON {
		if gws == nil {
			gws = []api.Gateway{}
		}
		return writeJSON(r.stdout, gws)
	}
	if len(gws) == 0 {
		fmt.Fprintln(r.stdout, "No gateways match.")
		return nil
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCOUNTRY\tROLES\tENDPOINT")
	for _, g := range gws {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.ID, g.Country, strings.Join(g.Roles, ","), g.Endpoint)
	}
	return tw.Flush()
}

func (r *runner) version(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return usagef("version takes no arguments")
	}
	fmt.Fprintln(r.stdout, "nymvpn", version.String())
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := r.c.Status(rctx)
	switch {
	case err == nil:
		fmt.Fprintf(r.stdout, "nymvpnd %s (pid %d)\n", st.Daemon.Version, st.Daemon.PID)
	case errors.Is(err, client.ErrDaemonNotRunning):
		fmt.Fprintln(r.stdout, "nymvpnd not running")
	default:
		fmt.Fprintf(r.stdout, "nymvpnd unknown: %v\n", err)
	}
	return nil
}
