// Package redistest starts real redis-server processes for tests.
//
// Each Server runs in its own temporary directory, listens on a free port of
// 127.0.0.1 and is killed when the test ends. Persistence is append-only
// (AOF), so Restart brings the server back with the data it had. Pause and
// Resume freeze and thaw the process to simulate a server that accepts
// connections but never answers.
//
// A missing redis-server binary fails the test instead of skipping it, so a
// machine without Redis can never pass the Redis tests silently.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// startAttempts is how many free ports Start tries before giving up.
	startAttempts = 5
	// readyTimeout bounds how long a starting server may take to answer PING.
	readyTimeout = 10 * time.Second
	// pollInterval is the pause between two readiness or state probes.
	pollInterval = 10 * time.Millisecond
	// probeTimeout bounds a single readiness probe.
	probeTimeout = 250 * time.Millisecond
	// logTailLines is how many lines of redis.log a startup failure reports.
	logTailLines = 20
)

// errAddrInUse reports that redis-server could not bind its port.
var errAddrInUse = errors.New("address already in use")

// Server is a redis-server process started for one test.
type Server struct {
	// Addr is the server's address, "127.0.0.1:port". It stays the same
	// across Restart.
	Addr string

	bin   string
	dir   string
	extra []string
	// conf, for a Sentinel, writes its config file for the port on the
	// first start; later starts keep the file Sentinel rewrote.
	conf    func(port string) string
	started bool

	mu   sync.Mutex
	proc *process // nil when the server is not running
}

// process is one run of redis-server.
type process struct {
	cmd    *exec.Cmd
	output bytes.Buffer  // stdout and stderr; read only after done is closed
	done   chan struct{} // closed once the process has been waited for
	err    error         // the result of Wait; read only after done is closed
}

// Options tunes a Server. The zero value gives the defaults described at
// Start.
type Options struct {
	// Args are extra redis-server arguments, for example
	// "--maxmemory-policy", "allkeys-lru". They come after the defaults, and
	// redis-server keeps the last value of a repeated option, so they
	// override them.
	Args []string
}

// RequireBinary returns the path of the executable name, looked up in PATH.
// If it cannot be found, the test fails: it is never skipped.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("redistest: %s not found (%v); install it with `apt-get install redis-server`", name, err)
		return ""
	}
	return path
}

// Start starts a redis-server for the test t and waits until it answers
// PING. The server is stopped when the test ends.
//
// The server runs in t.TempDir(), binds 127.0.0.1 only, on a free port, with
// --save "", --appendonly yes, --appendfsync everysec, --maxmemory-policy
// noeviction, --protected-mode no and --daemonize no, and logs to redis.log
// in its directory. The Args of every opts are appended after these
// defaults. Start fails the test if the server does not come up; the
// failure includes the end of the server's log.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	s := &Server{
		bin: RequireBinary(t, "redis-server"),
		dir: t.TempDir(),
	}
	for _, o := range opts {
		s.extra = append(s.extra, o.Args...)
	}
	startOn(t, s)
	return s
}

// startOn starts s on a free port of 127.0.0.1, trying another port when
// the one it found was taken meanwhile, and stops it when the test ends.
func startOn(t testing.TB, s *Server) {
	t.Helper()
	t.Cleanup(s.Stop)
	var err error
	for range startAttempts {
		var port int
		port, err = freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = s.start(); err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("redistest: start %s: %v", s.bin, err)
}

// URL returns the server's URL, "redis://127.0.0.1:port/0".
func (s *Server) URL() string {
	return "redis://" + s.Addr + "/0"
}

// Client returns a go-redis client with default options for the server. It
// is closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Pause freezes the server with SIGSTOP. It keeps accepting TCP connections
// (the kernel completes the handshake) but answers nothing until Resume.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGSTOP, true)
}

// Resume thaws a server frozen by Pause with SIGCONT.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT, false)
}

// signal sends sig to the running server and waits until the process is
// stopped (or no longer stopped) as the signal implies.
func (s *Server) signal(t testing.TB, sig syscall.Signal, stopped bool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		t.Fatalf("redistest: send %v to %s: server is not running", sig, s.Addr)
		return
	}
	pid := s.proc.cmd.Process.Pid
	if err := s.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("redistest: send %v to redis-server (pid %d): %v", sig, pid, err)
	}
	if err := waitStopped(pid, stopped, s.proc.done); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// Stop kills the server and waits for the process to exit. It is safe to
// call more than once, and on a paused server. Start registers it with
// t.Cleanup.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	// SIGKILL also ends a process stopped by SIGSTOP.
	_ = s.proc.cmd.Process.Kill()
	<-s.proc.done
	s.proc = nil
}

// Restart stops the server and starts it again on the same port and in the
// same directory, so it reloads the data it had from its AOF.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("redistest: restart redis-server on %s: %v", s.Addr, err)
	}
}

// args returns the command line for redis-server.
func (s *Server) args() ([]string, error) {
	_, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return nil, err
	}
	if s.conf != nil {
		path := filepath.Join(s.dir, "sentinel.conf")
		if !s.started {
			if err := os.WriteFile(path, []byte(s.conf(port)), 0o600); err != nil {
				return nil, err
			}
		}
		return []string{path}, nil
	}
	args := []string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "yes",
		"--appendfsync", "everysec",
		"--maxmemory-policy", "noeviction",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--dir", s.dir,
		"--logfile", s.logPath(),
	}
	return append(args, s.extra...), nil
}

func (s *Server) logPath() string {
	return filepath.Join(s.dir, "redis.log")
}

// start launches redis-server on s.Addr and waits until it is ready. On
// failure the process is stopped and the error carries the end of the log;
// it wraps errAddrInUse if the port was taken.
func (s *Server) start() error {
	args, err := s.args()
	if err != nil {
		return err
	}
	logOffset := fileSize(s.logPath())

	p := &process{cmd: exec.Command(s.bin, args...), done: make(chan struct{})}
	p.cmd.Dir = s.dir
	p.cmd.Stdout = &p.output
	p.cmd.Stderr = &p.output
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	readyErr := waitReady(s.Addr, p)
	if readyErr == nil {
		s.started = true
		return nil
	}
	s.Stop() // after this, p.output is safe to read
	log := logTail(s.logPath(), logOffset) + strings.TrimSpace(p.output.String())
	if strings.Contains(log, "Address already in use") {
		readyErr = fmt.Errorf("%w: %w", errAddrInUse, readyErr)
	}
	return fmt.Errorf("%w\n--- end of redis.log ---\n%s", readyErr, log)
}

// waitReady polls addr until the redis-server of p answers PING, p exits or
// readyTimeout passes.
func waitReady(addr string, p *process) error {
	deadline := time.Now().Add(readyTimeout)
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		err := probe(addr, p.cmd.Process.Pid)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready after %v: %w", addr, readyTimeout, err)
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis-server exited during startup: %v", p.err)
		case <-ticker.C:
		}
	}
}

// probe connects to addr, sends PING and INFO server, and succeeds if the
// answer is PONG from the redis-server with process id pid (and not from
// some other server that happens to own the port).
func probe(addr string, pid int) error {
	conn, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, "PING\r\nINFO server\r\n"); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("unexpected reply to PING: %q", strings.TrimSpace(line))
	}
	line, err = r.ReadString('\n')
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(line, "$"), "\r\n"))
	if !strings.HasPrefix(line, "$") || err != nil || n < 0 {
		return fmt.Errorf("unexpected reply to INFO: %q", strings.TrimSpace(line))
	}
	info := make([]byte, n)
	if _, err := io.ReadFull(r, info); err != nil {
		return err
	}
	if !bytes.Contains(info, []byte("\r\nprocess_id:"+strconv.Itoa(pid)+"\r\n")) {
		return fmt.Errorf("another process answers on %s", addr)
	}
	return nil
}

// waitStopped polls /proc until process pid is stopped (or, if stopped is
// false, no longer stopped), or it exits. Where /proc is not available it
// returns at once.
func waitStopped(pid int, stopped bool, done <-chan struct{}) error {
	statPath := "/proc/" + strconv.Itoa(pid) + "/stat"
	deadline := time.Now().Add(readyTimeout)
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		stat, err := os.ReadFile(statPath)
		if err != nil {
			return nil // no procfs, or the process is gone: nothing to wait for
		}
		// The state is the first field after the parenthesised command name.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			return fmt.Errorf("malformed %s: %q", statPath, stat)
		}
		if state := stat[i+2]; (state == 'T') == stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server (pid %d) did not change state (stopped=%t) within %v", pid, stopped, readyTimeout)
		}
		select {
		case <-done:
			return nil
		case <-ticker.C:
		}
	}
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// fileSize returns the size of the file at path, or 0 if it cannot be read.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns the last logTailLines lines that were written to the file
// at path after offset, each ending in a newline.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// Running reports whether the server's process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}
