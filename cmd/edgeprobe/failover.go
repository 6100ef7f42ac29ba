package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgeprobe/edgeprobe/failover"
	"github.com/edgeprobe/edgeprobe/internal/netcheck"
	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
	"github.com/edgeprobe/edgeprobe/view"
)

// maxAdminTokenBytes bounds the token file: a token is a line.
const maxAdminTokenBytes = 64 << 10

// maxAnswerBytes bounds what is read of the view's answer.
const maxAnswerBytes = 4 << 20

// cmdFailover speaks to a running view's failover API (failover/README.md, "HTTP API")
// with an admin token.
func cmdFailover(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("failover", "status|hold|release|failback SITE [--view URL] [--token-file FILE] [--reason TEXT]",
		"Show or steer the view's failover actions:\n"+
			"  status          the hold and every site's failover state, with its last decision\n"+
			"  hold            hold every further action (needs --reason); a manual failback still goes through\n"+
			"  release         end the hold; what is due then happens at once\n"+
			"  failback SITE   return a failed-over site to its primary records now\n"+
			"Exit status: 0 done, 1 the view refused or could not be reached, 2 bad usage.", stderr)
	viewURL := fs.String("view", "http://"+view.DefaultListen, "the view's base `URL`")
	tokenFile := fs.String("token-file", "", "`file` holding one of the view's admin_tokens (sent as a bearer token)")
	reason := fs.String("reason", "", "why: the hold's reason, kept in the audit log")
	timeout := fs.Duration("timeout", 10*time.Second, "give up on the view after this long")
	asJSON := fs.Bool("json", false, "print the view's JSON answer instead of the table")
	args, status, done := parseInterleaved(fs, args, stdout)
	if done {
		return status
	}
	if len(args) == 0 {
		return usageError(fs, "missing the subcommand: status, hold, release or failback SITE")
	}
	sub, rest := args[0], args[1:]
	want := 0
	if sub == "failback" {
		want = 1
	}
	switch {
	case sub != "status" && sub != "hold" && sub != "release" && sub != "failback":
		return usageError(fs, "unknown subcommand %q; allowed: status, hold, release, failback SITE", sub)
	case len(rest) < want:
		return usageError(fs, "failback needs the SITE")
	case len(rest) > want:
		return usageError(fs, "unexpected argument %q", rest[want])
	case sub == "hold" && strings.TrimSpace(*reason) == "":
		return usageError(fs, "hold needs --reason TEXT (it goes to the audit log)")
	case *timeout <= 0:
		return usageError(fs, "--timeout %s: must be positive", *timeout)
	}
	if msg := netcheck.URL(*viewURL); msg != "" {
		return usageError(fs, "--view: %s", msg)
	}
	token := ""
	if *tokenFile != "" {
		b, err := tomlconf.ReadFileLimit(*tokenFile, maxAdminTokenBytes)
		if err != nil {
			return usageError(fs, "--token-file: %v", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return usageError(fs, "--token-file: %s is empty", *tokenFile)
		}
	}
	api := &failoverAPI{base: strings.TrimSuffix(*viewURL, "/"), token: token,
		client: &http.Client{Timeout: *timeout}}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	var (
		method = http.MethodPost
		path   string
		body   any
	)
	req := failover.Request{Reason: *reason, Who: operator()}
	switch sub {
	case "status":
		method, path = http.MethodGet, failover.PathStatus
	case "hold":
		path, body = failover.PathHold, req
	case "release":
		path, body = failover.PathRelease, req
	case "failback":
		path, body = failover.PathFailback+url.PathEscape(rest[0]), req
	}
	raw, err := api.do(ctx, method, path, body)
	if err != nil {
		fmt.Fprintf(stderr, "edgeprobe failover %s: %v\n", sub, err)
		return exitFailure
	}
	if *asJSON {
		stdout.Write(raw)
		return exitOK
	}
	var st failover.Status
	if sub == "status" {
		err = json.Unmarshal(raw, &st)
	} else {
		var resp failover.Response
		if err = json.Unmarshal(raw, &resp); err == nil && resp.Status != nil {
			st = *resp.Status
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgeprobe failover %s: the view's answer is not the failover API's: %v\n", sub, err)
		return exitFailure
	}
	switch sub {
	case "hold":
		fmt.Fprintf(stdout, "held: %s\n", *reason)
	case "release":
		fmt.Fprintln(stdout, "released")
	case "failback":
		for _, s := range st.Sites {
			if s.Site == rest[0] {
				fmt.Fprintf(stdout, "%s: %s\n", s.Site, s.State)
			}
		}
	default:
		printStatus(stdout, api.base, st)
	}
	return exitOK
}

// operator names the person at the keyboard for the audit log: user@host.
func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		name += "@" + h
	}
	return "cli " + name
}

type failoverAPI struct {
	base, token string
	client      *http.Client
}

// do sends one request and returns the answer's body; an answer other than 200 is an
// error carrying the view's own message.
func (a *failoverAPI) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %v", method, netcheck.Redact(a.base+path), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e failover.Response
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		hint := ""
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			hint = " (give an admin token with --token-file)"
		case http.StatusNotFound:
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				hint = " (does this view have [actions]?)"
			}
		}
		return nil, fmt.Errorf("%s (HTTP %d)%s", msg, resp.StatusCode, hint)
	}
	return raw, nil
}

func printStatus(w io.Writer, base string, st failover.Status) {
	hold := "none"
	if st.Hold != nil {
		hold = fmt.Sprintf("held by %s since %s: %s", st.Hold.Who, st.Hold.Since.UTC().Format(time.RFC3339), st.Hold.Reason)
	}
	dry := "no"
	if st.DryRun {
		dry = "yes: decisions are recorded, nothing is changed"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "view\t%s\n", base)
	fmt.Fprintf(tw, "hold\t%s\n", hold)
	fmt.Fprintf(tw, "dry run\t%s\n", dry)
	fmt.Fprintf(tw, "active\t%d (max_concurrent_failovers %d, max_failovers_per_hour %d, lost_for %s)\n",
		st.Active, st.MaxConcurrentFailovers, st.MaxFailoversPerHour, st.LostFor)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tSTATE\tSINCE\tVERDICT\tFAILBACK\tLAST DECISION")
	for _, s := range st.Sites {
		since := "-"
		if !s.Since.IsZero() {
			since = s.Since.UTC().Format(time.RFC3339)
		}
		verdict := s.Verdict
		if verdict == "" {
			verdict = "-"
		}
		if s.Silenced {
			verdict += " (silenced)"
		}
		last := "-"
		if len(s.Last) > 0 {
			r := s.Last[0]
			last = r.Time.UTC().Format(time.RFC3339) + " " + r.Decision
			if r.Rcode != "" {
				last += " " + r.Rcode
			}
			if r.Error != "" {
				last += ": " + r.Error
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s %s\t%s\n", s.Site, s.State, since, verdict, s.Failback, s.RecoverFor, last)
	}
	tw.Flush()
	for _, s := range st.Sites {
		if s.Reason != "" {
			fmt.Fprintf(w, "\n%s is %s: %s\n", s.Site, s.State, s.Reason)
		}
	}
}
