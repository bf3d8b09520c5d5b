package bgp

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// privateNetnsEnv marks the re-executed test binary.
const privateNetnsEnv = "TABBY_BGP_TEST_PRIVATE_NETNS"

// TestMain re-runs the test binary in a private network namespace when it
// runs as root: GoBGP opens sockets from its own goroutines, so the whole
// process must sit in the namespace its speakers use, and tests must never
// open sockets or add links in the machine's own namespace. Without root
// the in-process tests use loopback addresses 127.0.0.1x and the kernel and
// BIRD tests skip.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(privateNetnsEnv) == "" &&
		!slices.ContainsFunc(os.Args, func(a string) bool { return strings.Contains(a, "fuzzworker") }) {
		if unshare, err := exec.LookPath("unshare"); err == nil {
			cmd := exec.Command(unshare, append([]string{"--net", "--", "/bin/sh", "-c", `ip link set lo up && exec "$0" "$@"`, os.Args[0]}, os.Args[1:]...)...)
			cmd.Env = append(os.Environ(), privateNetnsEnv+"=1")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); ok {
				os.Exit(ee.ExitCode())
			}
			if err != nil {
				os.Stderr.WriteString("bgp tests: cannot re-run in a private netns: " + err.Error() + "\n")
				os.Exit(2)
			}
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}
