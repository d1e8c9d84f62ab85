package caddymodule

import (
	"fmt"
	"strconv"
)

// refundSet is the parsed refund_on list.
type refundSet struct {
	class4, class5 bool
	codes          map[int]bool
	aborted        bool
}

// parseRefundOn parses refund_on conditions; none means 5xx.
func parseRefundOn(conds []string) (refundSet, error) {
	var s refundSet
	if len(conds) == 0 {
		conds = []string{"5xx"}
	}
	for _, c := range conds {
		switch c {
		case "5xx":
			s.class5 = true
		case "4xx":
			s.class4 = true
		case "error":
			s.aborted = true
		default:
			n, err := strconv.Atoi(c)
			if err != nil || n < 400 || n > 599 || c != strconv.Itoa(n) {
				return s, fmt.Errorf("refund_on: %q is not 5xx, 4xx, error or a status code from 400 to 599", c)
			}
			if s.codes == nil {
				s.codes = map[int]bool{}
			}
			s.codes[n] = true
		}
	}
	return s, nil
}

// status reports whether a response with this status is refunded. A client
// that left (499) never is.
func (s refundSet) status(code int) bool {
	if code == 499 {
		return false
	}
	return s.codes[code] || (s.class5 && code >= 500 && code < 600) || (s.class4 && code >= 400 && code < 500)
}
