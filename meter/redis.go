package meter

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds one logical Redis operation, retries included.
const DefaultTimeout = 200 * time.Millisecond

// DefaultPrefix starts every Redis key.
const DefaultPrefix = "tollgate"

// defaultCheckTimeout bounds CheckConfig, which runs once at start.
const defaultCheckTimeout = 2 * time.Second

// RedisOptions configures a Redis store. Exactly one of URL, Sentinel and
// Cluster says where Redis is.
type RedisOptions struct {
	// URL is one server, as redis://[user:pass@]host:port/db or rediss://
	// for TLS.
	URL string

	// Sentinel follows the master that a set of Sentinels name, through
	// failovers.
	Sentinel *SentinelOptions

	// Cluster spreads accounts over the shards of a Redis Cluster, given
	// some of its nodes.
	Cluster []string

	// Username and Password authenticate to Redis with Sentinel or Cluster;
	// a URL carries its own. Default: none.
	Username, Password string

	// TLS, if set, is used to reach every node with Sentinel or Cluster, the
	// Sentinels included; a URL says rediss:// instead. Default: none.
	TLS *tls.Config

	// Replicas is how many replicas must acknowledge each change of money
	// (WAIT, within Timeout) before it counts as replicated. Default: 0.
	Replicas int

	// Unreplicated, if set, is called for each request operation that
	// applied on the master but was not acknowledged by Replicas replicas
	// within Timeout. Credits and debits return ErrUnreplicated instead.
	Unreplicated func()

	// Prefix starts every key. It has no braces or spaces. Default:
	// tollgate.
	Prefix string

	// Timeout bounds one logical operation, retries included. Default: 200ms.
	Timeout time.Duration

	Config
}

// SentinelOptions names a master and the Sentinels that watch it.
type SentinelOptions struct {
	// Master is the name the Sentinels monitor the master by.
	Master string

	// Addrs are some of the Sentinels, as host:port.
	Addrs []string

	// Password authenticates to the Sentinels. Default: none.
	Password string
}

// Redis is a store on Redis. Every operation is one Lua script on one
// account's keys, which share a hash slot:
// <prefix>:{<base64url of the account id>}:<name>.
//
// go-redis retries a command whose reply was lost; every script records its
// op or id, so a retry returns the first result. A call that times out has an
// unknown outcome: the script refuses to apply after a deadline measured on
// Redis's own clock, and Charge and Hold cancel their op in the background
// until Redis acknowledges.
type Redis struct {
	client   redis.UniversalClient
	cluster  *redis.ClusterClient // client, when it is a cluster
	replicas int
	onUnrepl func()
	prefix   string
	timeout  time.Duration
	cfg      Config
	clock    *redisClock
	clocks   sync.Map // on a cluster, each master's *redisClock by address
	bg       *background

	// Precomputed common script arguments.
	retention string
	opTTL     string
}

// NewRedis returns a Redis store. It does not connect: go-redis dials on the
// first operation.
func NewRedis(opts RedisOptions) (*Redis, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, "{} \t\r\n") {
		return nil, errors.New("redis key prefix must not contain braces or spaces")
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, errors.New("redis timeout must be positive")
	}
	if opts.Replicas < 0 {
		return nil, errors.New("redis replicas must not be negative")
	}
	client, err := connect(opts)
	if err != nil {
		return nil, err
	}
	return newRedis(client, opts), nil
}

func newRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	cfg := opts.Config.withDefaults()
	s := &Redis{
		client:    client,
		replicas:  opts.Replicas,
		onUnrepl:  opts.Unreplicated,
		prefix:    opts.Prefix,
		timeout:   opts.Timeout,
		cfg:       cfg,
		retention: strconv.Itoa(cfg.Retention),
		opTTL:     strconv.FormatInt(cfg.OpRetention.Milliseconds(), 10),
	}
	s.cluster, _ = client.(*redis.ClusterClient)
	s.clock = &redisClock{client: client, now: cfg.Now}
	s.bg = newBackground(func() { client.Close() })
	return s
}

// keyNames are the names of an account's keys, in the scripts' order.
var keyNames = [...]string{"acct", "ledger", "holds", "expiry", "usage"}

// keys returns the account's keys, and the record key when record is given.
// They share one allocation. The account id is valid, so at most 128 bytes.
func (s *Redis) keys(account, record string) []string {
	var buf [171]byte // the base64 of 128 bytes
	enc := buf[:base64.RawURLEncoding.EncodedLen(len(account))]
	base64.RawURLEncoding.Encode(enc, []byte(account))
	n := len(keyNames)
	if record != "" {
		n++
	}
	var b strings.Builder
	b.Grow(n*(len(s.prefix)+len(enc)+4) + len("acctledgerholdsexpiryusage") + len(record))
	var ends [len(keyNames) + 1]int
	for i := range n {
		b.WriteString(s.prefix)
		b.WriteString(":{")
		b.Write(enc)
		b.WriteString("}:")
		if i < len(keyNames) {
			b.WriteString(keyNames[i])
		} else {
			b.WriteString(record)
		}
		ends[i] = b.Len()
	}
	all, start := b.String(), 0
	keys := make([]string, n)
	for i := range keys {
		keys[i], start = all[start:ends[i]], ends[i]
	}
	return keys
}

// run runs a script within the store's timeout, passing the common
// arguments. A script that changes money gets a deadline on Redis's clock
// and, when the store has replicas, waits for them: if they do not all
// acknowledge in time, run returns the reply with ErrUnreplicated.
func (s *Redis) run(ctx context.Context, script *redis.Script, keys []string, changes bool, args ...any) ([]any, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	dl := int64(0)
	if changes {
		var err error
		if dl, err = s.clockFor(ctx, keys[0]).deadline(ctx); err != nil {
			return nil, fmt.Errorf("%w: reading redis time: %v", ErrUnavailable, err)
		}
	}
	argv := make([]any, 0, 3+len(args))
	argv = append(argv, dl, s.retention, s.opTTL)
	argv = append(argv, args...)
	var reply []any
	var err error
	acked := int64(s.replicas)
	if changes && s.replicas > 0 {
		reply, acked, err = s.evalWait(ctx, script, keys, argv)
	} else {
		reply, err = s.eval(ctx, script, keys, argv)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if len(reply) == 0 {
		return nil, fmt.Errorf("%w: empty script reply", ErrUnavailable)
	}
	reply = s.moved(keys[0], reply)
	if err := replyError(reply); err != nil {
		return reply, err
	}
	if acked < int64(s.replicas) {
		return reply, ErrUnreplicated
	}
	return reply, nil
}

// moved strips the 'MOVED', before, after that ends the reply of a script
// that changed an account's balance + held, and reports the move to
// Config.Moved.
func (s *Redis) moved(key string, reply []any) []any {
	n := len(reply)
	if n < 4 {
		return reply
	}
	if mark, _ := reply[n-3].(string); mark != "MOVED" {
		return reply
	}
	if s.cfg.Moved != nil {
		if account, ok := s.accountOf(key); ok {
			s.cfg.Moved(account, intAt(reply, n-2), intAt(reply, n-1))
		}
	}
	return reply[:n-3]
}

// eval runs a script through the client, which follows a cluster's MOVED
// and ASK and sends a script that meets NOSCRIPT again whole. While a
// migration has moved some of an account's keys and not the others, a
// cluster answers TRYAGAIN; eval tries again until the call's deadline.
func (s *Redis) eval(ctx context.Context, script *redis.Script, keys []string, argv []any) ([]any, error) {
	for {
		reply, err := script.Run(ctx, s.client, keys, argv...).Slice()
		if s.cluster == nil || !redis.IsTryAgainError(err) {
			return reply, err
		}
		if err := pause(ctx, tryAgainPause); err != nil {
			return nil, err
		}
	}
}

// unreplicated reports a request operation that applied on the master but
// that the replicas did not acknowledge in time, and clears the error: the
// request is served all the same.
func (s *Redis) unreplicated(err error) error {
	if !errors.Is(err, ErrUnreplicated) {
		return err
	}
	if s.onUnrepl != nil {
		s.onUnrepl()
	}
	return nil
}

// replyError turns a script's error reply into an error.
func replyError(reply []any) error {
	code, _ := reply[0].(string)
	reason := func() string {
		if len(reply) > 1 {
			if s, ok := reply[1].(string); ok {
				return s
			}
		}
		return ""
	}
	switch code {
	case "OK", "TERMS": // TERMS: purchase.lua asks for a refund's share
		return nil
	case "INVALID":
		return fmt.Errorf("%w: %s", ErrInvalid, reason())
	case "DEADLINE":
		return fmt.Errorf("%w: the operation reached redis after its deadline", ErrUnavailable)
	case "INSUFFICIENT":
		return &InsufficientError{Balance: intAt(reply, 1), Price: intAt(reply, 2), Held: intAt(reply, 3), Depleted: intAt(reply, 4) == 1}
	case "CONFLICT":
		return fmt.Errorf("%w: %s", ErrConflict, reason())
	case "NOTFOUND":
		return fmt.Errorf("%w: %s", ErrNotFound, reason())
	case "GONE":
		return ErrGone
	case "CANCELLED":
		return ErrCancelled
	}
	return fmt.Errorf("%w: unexpected script reply %q", ErrUnavailable, code)
}

// intAt returns reply[i] as an integer, or 0.
func intAt(reply []any, i int) int64 {
	if i >= len(reply) {
		return 0
	}
	switch v := reply[i].(type) {
	case int64:
		return v
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

func strAt(reply []any, i int) string {
	if i < len(reply) {
		if s, ok := reply[i].(string); ok {
			return s
		}
	}
	return ""
}

// receipt reads a request operation's reply.
func receipt(reply []any) Receipt {
	r := Receipt{
		Amount:   intAt(reply, 1),
		Held:     intAt(reply, 2),
		Balance:  intAt(reply, 3),
		Released: intAt(reply, 4),
		Replayed: intAt(reply, 6) == 1,
	}
	if ms := intAt(reply, 5); ms > 0 {
		r.Expires = time.UnixMilli(ms).UTC()
	}
	return r
}

// ClockOffset returns the latest estimate of Redis's clock minus the
// gateway's, and the round trip of the sample it comes from; zeros before the
// first sample. The store samples at its first operation and every minute.
func (s *Redis) ClockOffset() (offset, rtt time.Duration) { return s.clock.offset() }

// Use marks the store in use until done is called; see Store.
func (s *Redis) Use() (done func()) {
	s.bg.add()
	return sync.OnceFunc(s.bg.done)
}

// Drain waits until the background cancels are acknowledged, or ctx ends.
func (s *Redis) Drain(ctx context.Context) error { return s.bg.wait(ctx) }

// Pending returns how many background cancels are still trying.
func (s *Redis) Pending() int { return s.bg.pending() }

// Close closes the client once the background cancels are done.
func (s *Redis) Close() error {
	s.bg.close()
	return nil
}
