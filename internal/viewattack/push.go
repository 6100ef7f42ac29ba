package viewattack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/exporters/prompb"
)

// report is one agent's state in a push: its sites and their states.
type report struct {
	agent    string
	interval float64 // seconds
	sites    map[string]string
}

// encode builds a remote_write 1.0 body (snappy block of a WriteRequest) with the push
// contract's series for every report: the agent series, every site's state set, change
// time and detect time, as an agent's exporter sends them.
func encode(reports ...report) []byte {
	now := time.Now()
	ms := now.UnixMilli()
	var req prompb.WriteRequest
	add := func(v float64, labels ...string) {
		ls := make([]*prompb.Label, 0, len(labels)/2)
		for i := 0; i+1 < len(labels); i += 2 {
			ls = append(ls, &prompb.Label{Name: labels[i], Value: labels[i+1]})
		}
		slices.SortFunc(ls, func(x, y *prompb.Label) int { return strings.Compare(x.Name, y.Name) })
		req.Timeseries = append(req.Timeseries, &prompb.TimeSeries{Labels: ls, Samples: []*prompb.Sample{{Value: v, Timestamp: ms}}})
	}
	for _, r := range reports {
		add(0, contract.LabelName, contract.MetricAgentIsolated, contract.LabelAgent, r.agent)
		add(r.interval, contract.LabelName, contract.MetricPushInterval, contract.LabelAgent, r.agent)
		for _, site := range slices.Sorted(maps.Keys(r.sites)) {
			for _, st := range contract.SiteStates {
				v := 0.0
				if st == r.sites[site] {
					v = 1
				}
				add(v, contract.LabelName, contract.MetricSiteState, contract.LabelAgent, r.agent, contract.LabelSite, site, contract.LabelState, st)
			}
			add(float64(now.Add(-time.Second).UnixNano())/1e9, contract.LabelName, contract.MetricSiteStateChange, contract.LabelAgent, r.agent, contract.LabelSite, site)
			add(0.2, contract.LabelName, contract.MetricSiteDetect, contract.LabelAgent, r.agent, contract.LabelSite, site)
		}
	}
	raw, err := proto.Marshal(&req)
	if err != nil {
		panic(err) // plain strings and floats: only a bug gets here
	}
	return snappy.Encode(nil, raw)
}

// EncodePush is a remote_write 1.0 body of one agent's push: its agent series and the
// given sites' state sets, as an agent's exporter sends them.
func EncodePush(agent string, interval float64, sites map[string]string) []byte {
	return encode(report{agent: agent, interval: interval, sites: sites})
}

// PushHeaders sets the headers of a remote_write 1.0 push.
func PushHeaders(h http.Header) { pushHeaders(h) }

// pushHeaders are the headers of a remote_write 1.0 push as the remote_write
// specification has senders send them (and exporters/remotewrite.go does).
func pushHeaders(h http.Header) {
	h.Set("Content-Type", "application/x-protobuf")
	h.Set("Content-Encoding", "snappy")
	h.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	h.Set("User-Agent", "edgeprobe-viewattack")
}

// post sends body to url with the given headers and returns the status (0 for a
// transport error) and the answer's first bytes.
func post(ctx context.Context, client *http.Client, url string, body []byte, set func(http.Header)) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	set(req.Header)
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, strings.TrimSpace(string(msg)), fmt.Errorf("%s", resp.Status)
	}
	return resp.StatusCode, "", nil
}
