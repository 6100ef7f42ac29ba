package packaging

import (
	"os"
	"strings"
	"testing"
)

// TestUnitsRestart: both services come back whatever ended them, a death by SIGPIPE
// included (systemd counts it as a clean exit), but not after a configuration error
// (exit 2), which a restart cannot mend.
func TestUnitsRestart(t *testing.T) {
	for _, unit := range []string{"systemd/edgeprobe.service", "systemd/edgeprobe-view.service"} {
		data, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		settings := map[string]string{}
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				settings[k] = v
			}
		}
		for k, want := range map[string]string{"Restart": "always", "RestartSec": "2s", "RestartPreventExitStatus": "2"} {
			if settings[k] != want {
				t.Errorf("%s: %s=%q, want %q", unit, k, settings[k], want)
			}
		}
	}
}
