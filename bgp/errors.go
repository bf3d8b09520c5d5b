package bgp

import "errors"

// Sentinel errors; every error the package returns wraps one of them (or a
// context error) together with the object it concerns.
var (
	// ErrInvalidConfig: a Config field is out of range (AS number, router ID,
	// port, duration, CIDR), or the Speaker was not made by New (a zero
	// value).
	ErrInvalidConfig = errors.New("invalid BGP configuration")
	// ErrInvalidPeer: a peer's address (also: one of this node's own), AS
	// number, port, TTL, restart time, password or filters are invalid.
	ErrInvalidPeer = errors.New("invalid BGP peer")
	// ErrDuplicatePeer: two peers resolve to the same address.
	ErrDuplicatePeer = errors.New("duplicate BGP peer")
	// ErrInvalidPrefix: a prefix is invalid, not masked, or not unicast.
	ErrInvalidPrefix = errors.New("invalid prefix")
	// ErrInvalidCommunity: a community is not aa:nn or aa:nn:mm, or names
	// no community in Config.Communities.
	ErrInvalidCommunity = errors.New("invalid BGP community")
	// ErrInvalidFilter: a filter rule is malformed.
	ErrInvalidFilter = errors.New("invalid BGP filter")
	// ErrInvalidSource: an advertisement source name is empty or the
	// reserved "config/service-cidrs" (Speaker.Source).
	ErrInvalidSource = errors.New("invalid advertisement source")
	// ErrNotStarted: the speaker is not running (before Start or after Stop).
	ErrNotStarted = errors.New("BGP speaker not started")
	// ErrAlreadyStarted: Start was called twice.
	ErrAlreadyStarted = errors.New("BGP speaker already started")
)
