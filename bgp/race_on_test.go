//go:build race

package bgp

// raceEnabled: the test binary runs under the race detector.
const raceEnabled = true
