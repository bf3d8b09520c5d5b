package nftables_test

import (
	"testing"

	st "github.com/tabbynet/tabby/services/servicestest"
)

// TestRunner drives Sync from a syncrunner.Runner as a node agent does:
// events go to the tracker and Trigger; the runner applies them.
func TestRunner(t *testing.T) {
	fake, tr, p := newFake(t)
	st.RunnerDrivesSync(t, tr, p.Sync, tracer(fake))
}
