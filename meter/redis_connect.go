package meter

import (
	"errors"
	"fmt"
	"net"

	"github.com/redis/go-redis/v9"
)

// connect builds the client for the one way of reaching Redis that opts
// names: a URL, Sentinels, or a Cluster. All three bound every call by its
// context, and keep go-redis's retries, which are safe because every
// script records its op or id: a retry whose first try applied returns the
// first result.
func connect(opts RedisOptions) (redis.UniversalClient, error) {
	ways := 0
	for _, set := range []bool{opts.URL != "", opts.Sentinel != nil, len(opts.Cluster) > 0} {
		if set {
			ways++
		}
	}
	if ways != 1 {
		return nil, errors.New("redis takes exactly one of a url, sentinel and cluster")
	}
	if opts.URL != "" {
		if opts.Username != "" || opts.Password != "" || opts.TLS != nil {
			return nil, errors.New("a redis url carries its own username, password and tls (rediss://)")
		}
		ropts, err := redis.ParseURL(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("parsing redis url: %w", err)
		}
		ropts.ContextTimeoutEnabled = true
		ropts.DialTimeout = opts.Timeout
		ropts.PoolTimeout = opts.Timeout
		return redis.NewClient(ropts), nil
	}
	if s := opts.Sentinel; s != nil {
		if s.Master == "" || len(s.Addrs) == 0 {
			return nil, errors.New("redis sentinel needs a master name and at least one sentinel address")
		}
		if err := checkAddrs(s.Addrs); err != nil {
			return nil, fmt.Errorf("redis sentinel: %w", err)
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:            s.Master,
			SentinelAddrs:         s.Addrs,
			SentinelPassword:      s.Password,
			Username:              opts.Username,
			Password:              opts.Password,
			TLSConfig:             opts.TLS,
			ContextTimeoutEnabled: true,
			DialTimeout:           opts.Timeout,
			PoolTimeout:           opts.Timeout,
		}), nil
	}
	if err := checkAddrs(opts.Cluster); err != nil {
		return nil, fmt.Errorf("redis cluster: %w", err)
	}
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 opts.Cluster,
		Username:              opts.Username,
		Password:              opts.Password,
		TLSConfig:             opts.TLS,
		ContextTimeoutEnabled: true,
		DialTimeout:           opts.Timeout,
		PoolTimeout:           opts.Timeout,
	}), nil
}

// checkAddrs refuses an empty address list or an address without a port.
func checkAddrs(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("no addresses")
	}
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("bad address %q: want host:port", a)
		}
	}
	return nil
}
