package sphinx

import "errors"

// Sentinel errors; the package wraps them with context, test with errors.Is.
var (
	// ErrInvalidGeometry: NewGeometry got sizes it cannot use.
	ErrInvalidGeometry = errors.New("sphinx: invalid geometry")
	// ErrInvalidPacket: wrong size, malformed group element or routing
	// command, or a small-order alpha.
	ErrInvalidPacket = errors.New("sphinx: invalid packet")
	// ErrInvalidMAC: the header MAC does not match (tampered header, or the
	// packet was built for another key).
	ErrInvalidMAC = errors.New("sphinx: invalid header MAC")
	// ErrReplay: the ReplayFilter passed to Node.Unwrap has seen the tag.
	// The filter belongs to the caller; the package only reports it.
	ErrReplay = errors.New("sphinx: replayed packet")
	// ErrPayloadIntegrity: after the last layer the payload's zero tag or
	// padding is wrong (tampered payload or wrong SURB keys).
	ErrPayloadIntegrity = errors.New("sphinx: payload integrity check failed")
	// ErrPayloadTooLarge: the message does not fit the geometry.
	ErrPayloadTooLarge = errors.New("sphinx: payload too large")
	// ErrInvalidRoute: empty or too long route, or a negative delay.
	ErrInvalidRoute = errors.New("sphinx: invalid route")
	// ErrInvalidKey: malformed, small-order or out-of-subgroup key.
	ErrInvalidKey = errors.New("sphinx: invalid key")
	// ErrInvalidSURB: a SURB or SURBKeys encoding does not parse, or does not
	// match the geometry.
	ErrInvalidSURB = errors.New("sphinx: invalid SURB")
	// ErrRandom: reading the injected randomness failed.
	ErrRandom = errors.New("sphinx: reading randomness")
)
