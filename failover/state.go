package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StateFile is where the controller keeps, in the state directory, what it must not
// forget across a restart (README.md, "State across restarts").
const StateFile = "failover.json"

const stateVersion = 1

// Site states, as the API shows them.
const (
	StatePrimary     = "primary"      // the records are (as far as the view knows) the primary ones
	StateFailingOver = "failing_over" // a failover is under way (attempts, retries, runbooks)
	StateFailedOver  = "failed_over"  // the records are the failover ones
	StateFailingBack = "failing_back" // a failback is under way
	StateHeld        = "held"         // a failover is due but a guard rail holds it
)

// HoldInfo is the global hold.
type HoldInfo struct {
	Reason string    `json:"reason"`
	Who    string    `json:"who"`
	Since  time.Time `json:"since"`
}

type savedState struct {
	Version int                   `json:"version"`
	Hold    *HoldInfo             `json:"hold,omitempty"`
	Sites   map[string]*savedSite `json:"sites"`
}

// savedSite is what survives a restart of one site.
type savedSite struct {
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// Reason is why a held site is held.
	Reason string `json:"reason,omitempty"`
	// Incident says the damped verdict was lost: a restarted controller treats the site
	// as still lost until the verdicts show it up for recover_for.
	Incident bool `json:"incident"`
	// Handled says the incident (or the recovery) was acted on already: no further
	// automatic action until it ends.
	Handled bool `json:"handled"`
	// Failovers are the times of the failovers within the last hour, for
	// max_failovers_per_hour.
	Failovers []time.Time `json:"failovers,omitempty"`
	// Action, Who and Manual describe an operation under way (failing_over,
	// failing_back), which a restarted controller resumes.
	Action string `json:"action,omitempty"`
	Who    string `json:"who,omitempty"`
	Manual bool   `json:"manual,omitempty"`
}

func loadState(dir string) (*savedState, error) {
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return &savedState{Version: stateVersion, Sites: map[string]*savedSite{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failover state: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("failover state %s: %w (move it away to start afresh; the audit log says what was done)", filepath.Join(dir, StateFile), err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("failover state %s: version %d, this edgeprobe reads %d", filepath.Join(dir, StateFile), st.Version, stateVersion)
	}
	if st.Sites == nil {
		st.Sites = map[string]*savedSite{}
	}
	return &st, nil
}

// saveState replaces the state file atomically: a temporary file, fsynced, renamed over
// the old one, and the directory fsynced, so that a crash leaves the old state or the
// new one, never a torn file.
func saveState(dir string, st *savedState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, StateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("failover state: %w", err)
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, StateFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("failover state: %w", err)
	}
	return nil
}
