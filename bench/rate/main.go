// Command rate drives an HTTP endpoint open-loop, for the benchmarks that ask
// what latency a gateway adds at a given load: it sends GET requests at a
// fixed rate for a fixed time, whether or not the answers keep up, and
// measures each request's latency from the time it was due to be sent, so
// that a stall of the target shows in the latency of every request it held
// back, not only in the one it stalled (coordinated omission corrected, as
// wrk2 does; wrk, closed-loop, sends nothing while it waits and so hides it).
//
//	go run ./bench/rate -rate 5000 -d 10s -c 32 -tokens tokens.txt http://127.0.0.1:8080/
//
// Request i is due i/rate after the start. At most -c requests are in flight,
// over at most -c kept-alive connections; a request that falls due while all
// -c are busy waits for one, and that wait counts in its latency. A request
// that fell due while a sender was free is measured from when it was sent
// instead, so that the sender's own timer, which often wakes up to a
// millisecond late, is not counted against the target. With -tokens each
// request carries the next token of the file (one a line) as a bearer token,
// round robin; -H adds a header to every request.
//
// It prints one line, for a shell script to read with awk, latencies in
// milliseconds:
//
//	rate 4999.6 sent 50000 non2xx 0 errors 0 unsent 0 p50 0.412ms p90 0.655ms p99 1.204ms p999 3.870ms max 5.112ms
//
// rate is the requests sent per second, from the start to the end of the last
// one; sent the requests sent; non2xx those answered with a status outside
// 2xx (redirects are not followed); errors those that got no answer (a
// refused connection, no answer within -timeout); unsent the requests due
// within -d that were still waiting for a free sender -timeout after it,
// which only a target that cannot keep up leaves behind. The percentiles and
// max are over the answered requests, to the end of the body, and zero when
// none was. The first error, if any, is written to standard error.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	rate := flag.Float64("rate", 0, "requests per second (required)")
	duration := flag.Duration("d", 10*time.Second, "how long requests fall due")
	conns := flag.Int("c", 32, "connections, and the most requests in flight at once")
	timeout := flag.Duration("timeout", 2*time.Second, "how long a request may take; also how long after -d requests still due are sent")
	tokens := flag.String("tokens", "", "a file of bearer tokens, one a line, sent round robin in Authorization")
	header := http.Header{}
	flag.Func("H", "a header `Name: value` sent with every request (repeatable)", func(s string) error {
		name, value, ok := strings.Cut(s, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return errors.New("want Name: value")
		}
		header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		return nil
	})
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: rate -rate R [-d D] [-c C] [-timeout T] [-tokens FILE] [-H 'Name: value']… URL")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	cfg := config{url: flag.Arg(0), rate: *rate, duration: *duration, conns: *conns, timeout: *timeout, header: header}
	res, err := run(cfg, *tokens)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rate:", err)
		os.Exit(1)
	}
	fmt.Println(res)
	if res.firstErr != nil {
		fmt.Fprintf(os.Stderr, "rate: %d error(s), the first: %v\n", res.errors, res.firstErr)
	}
}

// config is one run's settings.
type config struct {
	url      string
	rate     float64
	duration time.Duration
	conns    int
	timeout  time.Duration
	header   http.Header
}

// result is what a run measured.
type result struct {
	rate                     float64
	sent, non2xx, errors     int
	unsent                   int
	p50, p90, p99, p999, max time.Duration
	firstErr                 error
}

// String formats r as the one line the command prints.
func (r result) String() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }
	return fmt.Sprintf("rate %.1f sent %d non2xx %d errors %d unsent %d p50 %s p90 %s p99 %s p999 %s max %s",
		r.rate, r.sent, r.non2xx, r.errors, r.unsent, ms(r.p50), ms(r.p90), ms(r.p99), ms(r.p999), ms(r.max))
}

// sender is what one sender goroutine counted.
type sender struct {
	latencies            []time.Duration
	sent, non2xx, errors int
	unsent               int
	firstErr             error
}

// run checks cfg, reads the token file if one is given, and sends the
// requests.
func run(cfg config, tokenFile string) (result, error) {
	switch {
	case cfg.rate <= 0:
		return result{}, errors.New("-rate must be above 0")
	case cfg.duration <= 0:
		return result{}, errors.New("-d must be above 0")
	case cfg.conns < 1:
		return result{}, errors.New("-c must be at least 1")
	case cfg.timeout <= 0:
		return result{}, errors.New("-timeout must be above 0")
	}
	u, err := url.Parse(cfg.url)
	if err != nil {
		return result{}, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return result{}, fmt.Errorf("%s is not an http or https URL", cfg.url)
	}
	headers := []http.Header{cfg.header}
	if tokenFile != "" {
		if headers, err = tokenHeaders(tokenFile, cfg.header); err != nil {
			return result{}, err
		}
	}
	return send(cfg, headers), nil
}

// tokenHeaders returns base with an Authorization of each token of file, one
// a line, in order; blank lines are skipped.
func tokenHeaders(file string, base http.Header) ([]http.Header, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var headers []http.Header
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		token := strings.TrimSpace(sc.Text())
		if token == "" {
			continue
		}
		h := base.Clone()
		h.Set("Authorization", "Bearer "+token)
		headers = append(headers, h)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(headers) == 0 {
		return nil, fmt.Errorf("%s holds no token", file)
	}
	return headers, nil
}

// send runs cfg.conns senders that take the requests in turn, each waiting
// for its request's due time, and gathers what they counted. Request i
// carries headers[i%len(headers)].
func send(cfg config, headers []http.Header) result {
	client := &http.Client{
		Timeout: cfg.timeout,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: cfg.conns,
			MaxConnsPerHost:     cfg.conns,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	total := int64(math.Ceil(cfg.duration.Seconds() * cfg.rate))
	interval := float64(time.Second) / cfg.rate
	var next atomic.Int64
	senders := make([]sender, cfg.conns)
	var wg sync.WaitGroup
	start := time.Now()
	cutoff := start.Add(cfg.duration + cfg.timeout)
	for k := range senders {
		s := &senders[k]
		s.latencies = make([]time.Duration, 0, total/int64(cfg.conns)+1)
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				due := start.Add(time.Duration(float64(i) * interval))
				from := due
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
					from = time.Now()
				} else if time.Now().After(cutoff) {
					s.unsent++
					continue
				}
				status, err := get(client, cfg.url, headers[i%int64(len(headers))])
				s.sent++
				switch {
				case err != nil:
					s.errors++
					if s.firstErr == nil {
						s.firstErr = err
					}
					continue
				case status < 200 || status > 299:
					s.non2xx++
				}
				s.latencies = append(s.latencies, time.Since(from))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var r result
	var all []time.Duration
	for _, s := range senders {
		r.sent += s.sent
		r.non2xx += s.non2xx
		r.errors += s.errors
		r.unsent += s.unsent
		if r.firstErr == nil {
			r.firstErr = s.firstErr
		}
		all = append(all, s.latencies...)
	}
	slices.Sort(all)
	r.rate = float64(r.sent) / elapsed.Seconds()
	r.p50, r.p90, r.p99, r.p999 = percentile(all, 50), percentile(all, 90), percentile(all, 99), percentile(all, 99.9)
	if len(all) > 0 {
		r.max = all[len(all)-1]
	}
	return r
}

// get sends one GET of rawURL with header, which it only reads (so the
// senders share it), and reads the body to the end so that the connection is
// kept alive. It returns the answer's status.
func get(client *http.Client, rawURL string, header http.Header) (int, error) {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, err
	}
	req.Header = header
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted by nearest
// rank, or 0 if sorted is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}
