package meter

import (
	"strconv"
	"strings"
	"time"
)

// parseEntryID splits an entry id "<ms>-<seq>" into its parts, each at most
// 19 digits.
func parseEntryID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found || len(a) > 19 || len(b) > 19 {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}

// entryTime returns the time an entry id carries: its milliseconds.
func entryTime(id string) time.Time {
	ms, _, _ := parseEntryID(id)
	return time.UnixMilli(int64(ms)).UTC()
}
