package meter_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

func TestAccountJSON(t *testing.T) {
	a := meter.Account{Account: "alice", Balance: 9, Held: 1, Credited: 10, Created: time.Date(2026, 11, 23, 14, 0, 0, 123456789, time.FixedZone("x", 3600))}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"account":"alice","balance":9,"held":1,"credited":10,"charged":0,"debited":0,"refunded":0,"created":"2026-11-23T13:00:00.123Z"}`
	if string(b) != want {
		t.Errorf("account JSON\n%s\nwant\n%s", b, want)
	}
}
