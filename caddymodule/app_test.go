package caddymodule

import "testing"

// TestLoopbackListener classifies server listen addresses: only loopback
// addresses, localhost and unix sockets keep a listener on this machine.
func TestLoopbackListener(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080":               true,
		"127.0.0.2:8080":               true,
		"[::1]:8080":                   true,
		"localhost:8080":               true,
		"tcp/127.0.0.1:8080":           true,
		"tcp4/127.0.0.1:8080-8085":     true,
		"udp/[::1]:8443":               true,
		"unix//run/tollgate.sock":      true,
		"unix//run/tollgate.sock|0222": true,
		"unixgram/@tollgate":           true,
		":8080":                        false,
		"tcp/:8080":                    false,
		"0.0.0.0:8080":                 false,
		"[::]:8080":                    false,
		"192.0.2.1:8080":               false,
		"[2001:db8::1]:8080":           false,
		"example.test:8080":            false,
		"api.localhost:8080":           false,
		"fd/3":                         false,
		"127.0.0.1:http":               false,
	} {
		if got := loopbackListener(addr); got != want {
			t.Errorf("loopbackListener(%q) = %v, want %v", addr, got, want)
		}
	}
}
