package statuslist

import "errors"

// Sentinel errors. Every failure is wrapped into one of them, so callers use errors.Is.
var (
	// ErrNotAllowed: the uri matches no entry of status_list.lists. Such a list is never
	// fetched; the token is answered by the unknown_list policy.
	ErrNotAllowed = errors.New("status list uri not allowed by the configuration")
	// ErrUnavailable: the list is allowed but no usable copy is held (never fetched yet,
	// expired, older than max_age, or the directory is full). The filter follows its fail_mode.
	ErrUnavailable = errors.New("status list not available")
	// ErrOutOfRange: the index lies past the end of the list (section 8.3: reject).
	ErrOutOfRange = errors.New("status list index out of range")
	// ErrBadToken: a fetched Status List Token failed validation; the last good list is kept.
	ErrBadToken = errors.New("invalid status list token")
	// ErrTooLarge: the response or the decompressed list exceeds its configured bound.
	ErrTooLarge = errors.New("status list too large")
	// ErrInvalidConfig wraps every configuration error; the message names the field.
	ErrInvalidConfig = errors.New("invalid status_list configuration")
	// ErrBadRecord: a record in shared data cannot be decoded; it is treated as absent.
	ErrBadRecord = errors.New("malformed status list record in shared data")
)
