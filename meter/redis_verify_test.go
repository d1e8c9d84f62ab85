package meter_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// redisKey is the name of one of an account's keys under prefix.
func redisKey(prefix, account, name string) string {
	return prefix + ":{" + base64.RawURLEncoding.EncodeToString([]byte(account)) + "}:" + name
}

// dumpAll returns every key of the database with its serialized value.
func dumpAll(t *testing.T, client *redis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if n := client.DBSize(ctx).Val(); n != int64(len(keys)) {
		t.Fatalf("DBSIZE %d, KEYS %d", n, len(keys))
	}
	dump := make(map[string]string, len(keys))
	for _, k := range keys {
		dump[k] = client.Dump(ctx, k).Val()
	}
	return dump
}

// verifyUnchanged verifies an account and checks that doing so changed
// nothing in the database. It returns what verify found.
func verifyUnchanged(t *testing.T, s *meter.Redis, client *redis.Client, account string) meter.Check {
	t.Helper()
	before := dumpAll(t, client)
	c, err := s.Verify(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	if after := dumpAll(t, client); !maps.Equal(after, before) {
		t.Errorf("verify of %s changed the database: %d keys, was %d", account, len(after), len(before))
	}
	return c
}

// checkNames returns the names of the checks that found each drift, in order.
func checkNames(drift []meter.Drift) []string {
	var names []string
	for _, d := range drift {
		names = append(names, d.Check)
	}
	return names
}

// redisHistory gives alice a credit, a charge, a settled hold and an open
// hold "h".
func redisHistory(t *testing.T, s *meter.Redis) {
	t.Helper()
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Credit(ctx, meter.Transfer{Account: "alice", ID: "order-1", Amount: 100}))
	must(s.Charge(ctx, meter.Charge{Account: "alice", Op: "c", Amount: 5}))
	must(s.Hold(ctx, meter.Hold{Account: "alice", Op: "s", Max: 6, Min: 1, TTL: time.Hour}))
	must(s.Settle(ctx, meter.Settle{Account: "alice", Op: "s", Amount: 4}))
	must(s.Hold(ctx, meter.Hold{Account: "alice", Op: "h", Max: 10, Min: 1, TTL: time.Hour}))
}

// TestRedisVerifyFindsDrift corrupts an account's keys in each way and checks
// that verify names what breaks, and changes nothing.
func TestRedisVerifyFindsDrift(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	ctx := context.Background()
	for i, c := range []struct {
		name    string
		corrupt func(key func(string) string) error
		want    []string
	}{
		{"credited raised", func(key func(string) string) error {
			return client.HIncrBy(ctx, key("acct"), "cr", 5).Err()
		}, []string{meter.CheckLedger}},
		{"charged raised past the balance", func(key func(string) string) error {
			return client.HIncrBy(ctx, key("acct"), "ch", 200).Err()
		}, []string{meter.CheckNegative, meter.CheckLedger}},
		{"held raised", func(key func(string) string) error {
			return client.HIncrBy(ctx, key("acct"), "hd", 3).Err()
		}, []string{meter.CheckHeld, meter.CheckLedger}},
		{"a total that is no integer", func(key func(string) string) error {
			return client.HSet(ctx, key("acct"), "cr", "lots").Err()
		}, []string{meter.CheckTotals, meter.CheckNegative, meter.CheckLedger}},
		{"an open hold changed", func(key func(string) string) error {
			return client.HSet(ctx, key("holds"), "h", "11").Err()
		}, []string{meter.CheckHeld, meter.CheckLedger}},
		{"a bogus entry", func(key func(string) string) error {
			return client.XAdd(ctx, &redis.XAddArgs{Stream: key("ledger"), Values: []string{"k", "credit", "a", "5", "b", "999", "o", "bogus"}}).Err()
		}, []string{meter.CheckEntryBalance, meter.CheckLedger}},
		{"an expiry removed", func(key func(string) string) error {
			return client.ZRem(ctx, key("expiry"), "h").Err()
		}, []string{meter.CheckExpiry}},
		{"expired holds looked for too late", func(key func(string) string) error {
			return client.HSet(ctx, key("acct"), "nx", strconv.FormatInt(time.Now().Add(2*time.Hour).UnixMilli(), 10)).Err()
		}, []string{meter.CheckExpiry}},
	} {
		t.Run(c.name, func(t *testing.T) {
			prefix := fmt.Sprint("v", i)
			s := newRedis(t, meter.RedisOptions{URL: srv.URL(), Prefix: prefix, Timeout: 5 * time.Second})
			redisHistory(t, s)
			if got := verifyUnchanged(t, s, client, "alice"); len(got.Drift) != 0 || !got.WholeLedger {
				t.Fatalf("verify before the corruption: %+v, want no drift", got)
			}
			if err := c.corrupt(func(name string) string { return redisKey(prefix, "alice", name) }); err != nil {
				t.Fatal(err)
			}
			got := verifyUnchanged(t, s, client, "alice")
			if names := checkNames(got.Drift); !slices.Equal(names, c.want) {
				t.Errorf("drift %+v, want checks %q", got.Drift, c.want)
			}
		})
	}
}

// TestRedisVerifyLeavesExpiredHolds checks that an expired hold that no
// script has released yet is still open for verify, which does not release
// it.
func TestRedisVerifyLeavesExpiredHolds(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	ctx := context.Background()
	s := newRedis(t, meter.RedisOptions{URL: srv.URL(), Timeout: 5 * time.Second})
	if _, err := s.Hold(ctx, meter.Hold{Account: "alice", Op: "h", Max: 5, Min: 1, TTL: time.Hour, Bonus: 10}); err != nil {
		t.Fatal(err)
	}
	// The hold expired long ago, as far as the account's keys say.
	key := func(name string) string { return redisKey(meter.DefaultPrefix, "alice", name) }
	if err := client.ZAdd(ctx, key("expiry"), redis.Z{Score: 1, Member: "h"}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.HSet(ctx, key("acct"), "nx", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if got := verifyUnchanged(t, s, client, "alice"); len(got.Drift) != 0 {
		t.Errorf("verify with an expired hold: %+v, want no drift", got)
	}
	if held, err := client.HGet(ctx, key("holds"), "h").Result(); err != nil || held != "5" {
		t.Errorf("the expired hold after verify: %q, %v; want it open, holding 5", held, err)
	}
	a, err := s.Account(ctx, meter.Read{Account: "alice"})
	if err != nil || a.Held != 0 || a.Balance != 10 {
		t.Fatalf("the next read: %+v, %v; want the hold released", a, err)
	}
	if n := client.XLen(ctx, key("ledger")).Val(); n != 3 {
		t.Errorf("%d entries after the next read, want the bonus, the hold and its expired release", n)
	}
}

// TestRedisVerifyTrimmed checks an account whose ledger retention trimmed:
// the replay is skipped, the rest still checked.
func TestRedisVerifyTrimmed(t *testing.T) {
	// Small stream nodes, so that a retention of 5 trims 20 entries.
	srv := redistest.Start(t, redistest.Options{Args: []string{"--stream-node-max-entries", "4"}})
	client := srv.Client(t)
	ctx := context.Background()
	s := newRedis(t, meter.RedisOptions{URL: srv.URL(), Timeout: 5 * time.Second, Config: meter.Config{Retention: 5}})
	if _, err := s.Credit(ctx, meter.Transfer{Account: "alice", ID: "order-1", Amount: 100}); err != nil {
		t.Fatal(err)
	}
	for i := range 19 {
		if _, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: fmt.Sprint("op", i), Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	key := func(name string) string { return redisKey(meter.DefaultPrefix, "alice", name) }
	if n := client.XLen(ctx, key("ledger")).Val(); n >= 20 {
		t.Fatalf("the ledger kept %d entries of 20, want it trimmed", n)
	}
	if got := verifyUnchanged(t, s, client, "alice"); len(got.Drift) != 0 || got.WholeLedger {
		t.Fatalf("verify of a trimmed ledger: %+v, want no drift and no whole ledger", got)
	}
	if err := client.HIncrBy(ctx, key("acct"), "hd", 2).Err(); err != nil {
		t.Fatal(err)
	}
	got := verifyUnchanged(t, s, client, "alice")
	if names := checkNames(got.Drift); !slices.Equal(names, []string{meter.CheckHeld}) {
		t.Errorf("drift %+v of a trimmed ledger with held raised, want held alone", got.Drift)
	}
}
