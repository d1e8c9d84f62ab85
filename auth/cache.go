package auth

import (
	"crypto"
	"sync"
	"time"
)

// Cache bounds: how many verified tokens are kept, and the longest token
// worth keeping.
const (
	cacheEntries  = 10000
	cacheTokenMax = 1 << 10
)

// cache remembers verified tokens until their expiry, so a hot caller's
// token is not verified again on every request. Each Verifier has its own,
// so a config change never honours a token under old rules.
type cache struct {
	mu      sync.RWMutex
	entries map[string]cached
}

type cached struct {
	account string
	kid     string           // the key set's kid that verified it, if one did
	key     crypto.PublicKey // and the key that kid named then
	expires time.Time        // the token's exp plus the leeway
}

// get returns the account of a verified token that has not expired, and the
// key set's kid and key that verified it.
func (c *cache) get(token string, now time.Time) (account, kid string, key crypto.PublicKey, ok bool) {
	c.mu.RLock()
	e, ok := c.entries[token]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return "", "", nil, false
	}
	return e.account, e.kid, e.key, true
}

// put remembers a verified token, evicting an arbitrary one when full.
func (c *cache) put(token, account, kid string, key crypto.PublicKey, expires time.Time) {
	if len(token) > cacheTokenMax {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]cached)
	}
	if len(c.entries) >= cacheEntries {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[token] = cached{account, kid, key, expires}
}
