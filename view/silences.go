package view

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

// Silence is one maintenance window (docs/architecture.md, "Acting on a verdict"): from Start
// to End the site keeps its verdict, marked silenced, and notifies and acts on nothing.
type Silence struct {
	ID      string    `json:"id"`
	Site    string    `json:"site"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Comment string    `json:"comment"`
	Source  string    `json:"source"` // "config" (view.toml) or "api"
}

// active says whether the silence covers now.
func (s Silence) active(now time.Time) bool { return !now.Before(s.Start) && now.Before(s.End) }

// Bounds of what the silences API accepts, so that it cannot be made to grow without end.
const (
	maxSilences       = 1000
	maxSilenceComment = 1024
	maxSilenceLength  = 90 * 24 * time.Hour
	maxSilenceBody    = 16 << 10
)

// silences are the view's maintenance windows: those of view.toml and those set through
// the API, which a state directory keeps across restarts (silences.json, written whole,
// synced and renamed into place on every change). Ended silences are dropped.
type silences struct {
	mu   sync.Mutex
	list []Silence // sorted by start
	path string    // "" without a state directory
}

const silencesFile = "silences.json"

func newSilences(cfg *Config, now time.Time) (*silences, error) {
	s := &silences{}
	for i, sc := range cfg.Silences {
		start := sc.Start
		if start.IsZero() {
			start = now
		}
		s.list = append(s.list, Silence{ID: fmt.Sprintf("config-%d", i), Site: sc.Site, Start: start, End: sc.End,
			Comment: sc.Comment, Source: "config"})
	}
	if cfg.StateDir != "" {
		s.path = filepath.Join(cfg.StateDir, silencesFile)
		data, err := tomlconf.ReadFileLimit(s.path, maxSilences*(maxSilenceComment+512))
		switch {
		case os.IsNotExist(err):
		case err != nil:
			return nil, fmt.Errorf("read the silences: %w", err)
		default:
			var saved []Silence
			if err := json.Unmarshal(data, &saved); err != nil {
				return nil, fmt.Errorf("read the silences: %s: %w", s.path, err)
			}
			for _, sl := range saved {
				if sl.Source == "api" {
					s.list = append(s.list, sl)
				}
			}
		}
	}
	s.prune(now)
	return s, nil
}

// prune drops the silences that ended by now; s.mu is held (or s is not shared yet).
func (s *silences) prune(now time.Time) bool {
	n := len(s.list)
	s.list = slices.DeleteFunc(s.list, func(sl Silence) bool { return !now.Before(sl.End) })
	slices.SortStableFunc(s.list, func(a, b Silence) int { return a.Start.Compare(b.Start) })
	return len(s.list) != n
}

// silenced says whether site is silenced at now.
func (s *silences) silenced(site string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sl := range s.list {
		if sl.Site == site && sl.active(now) {
			return true
		}
	}
	return false
}

// all is every silence not ended at now.
func (s *silences) all(now time.Time) []Silence {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	return slices.Clone(s.list)
}

// next is the next time after now at which some silence starts or ends (the zero time
// when none will), and the sites it concerns then.
func (s *silences) next(now time.Time) (at time.Time, sites []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sl := range s.list {
		for _, t := range []time.Time{sl.Start, sl.End} {
			switch {
			case !t.After(now):
			case at.IsZero() || t.Before(at):
				at, sites = t, []string{sl.Site}
			case t.Equal(at) && !slices.Contains(sites, sl.Site):
				sites = append(sites, sl.Site)
			}
		}
	}
	return at, sites
}

// silenceRequest is the body of POST /api/v1/silences: an end, or a duration from now.
type silenceRequest struct {
	Site     string    `json:"site"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Duration string    `json:"duration"`
	Comment  string    `json:"comment"`
}

// parseSilence reads and checks a POST /api/v1/silences body; now is the view's clock.
func parseSilence(body []byte, now time.Time) (Silence, error) {
	var req silenceRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Silence{}, fmt.Errorf("body: %v; allowed: {\"site\", \"end\" (RFC 3339) or \"duration\" (\"2h\"), \"start\", \"comment\"}", err)
	}
	if dec.More() {
		return Silence{}, errors.New("body: more than one JSON object")
	}
	sl := Silence{Site: req.Site, Start: req.Start, End: req.End, Comment: req.Comment, Source: "api"}
	switch {
	case req.Site == "":
		return Silence{}, errors.New("site: missing")
	case len(req.Site) > 256:
		return Silence{}, errors.New("site: longer than 256 bytes")
	case len(req.Comment) > maxSilenceComment:
		return Silence{}, fmt.Errorf("comment: longer than %d bytes", maxSilenceComment)
	case req.Duration != "" && !req.End.IsZero():
		return Silence{}, errors.New("end and duration: give one of the two")
	}
	if sl.Start.IsZero() {
		sl.Start = now
	}
	if req.Duration != "" {
		d, err := tomlconf.ParseDuration(req.Duration)
		if err != nil {
			return Silence{}, fmt.Errorf("duration: %v", err)
		}
		if d <= 0 {
			return Silence{}, fmt.Errorf("duration: %q is not positive", req.Duration)
		}
		sl.End = sl.Start.Add(d)
	}
	switch {
	case sl.End.IsZero():
		return Silence{}, errors.New("end: missing; give \"end\" (RFC 3339) or \"duration\"")
	case !sl.End.After(sl.Start):
		return Silence{}, errors.New("end: not after start")
	case !sl.End.After(now):
		return Silence{}, errors.New("end: in the past")
	case sl.End.Sub(sl.Start) > maxSilenceLength:
		return Silence{}, fmt.Errorf("end: more than %s after start", maxSilenceLength)
	}
	return sl, nil
}

// add stores a silence from the API and returns it with its id.
func (s *silences) add(sl Silence, now time.Time) (Silence, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Silence{}, err
	}
	sl.ID = hex.EncodeToString(id[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	if len(s.list) >= maxSilences {
		return Silence{}, fmt.Errorf("%d silences are set already, the most a view keeps", maxSilences)
	}
	s.list = append(s.list, sl)
	s.prune(now)
	return sl, s.save()
}

// remove deletes the silence id and returns it.
func (s *silences) remove(id string, now time.Time) (Silence, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.list, func(sl Silence) bool { return sl.ID == id })
	if i < 0 {
		return Silence{}, false, nil
	}
	sl := s.list[i]
	s.list = slices.Delete(s.list, i, i+1)
	s.prune(now)
	return sl, true, s.save()
}

// save writes the API's silences to the state directory; s.mu is held.
func (s *silences) save() error {
	if s.path == "" {
		return nil
	}
	api := make([]Silence, 0, len(s.list))
	for _, sl := range s.list {
		if sl.Source == "api" {
			api = append(api, sl)
		}
	}
	data, err := json.MarshalIndent(api, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := writeFileSync(tmp, append(data, '\n')); err != nil {
		return fmt.Errorf("save the silences: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("save the silences: %w", err)
	}
	return nil
}
