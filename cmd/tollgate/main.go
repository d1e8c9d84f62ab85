// Command tollgate is Caddy with its standard modules and Tollgate. Every
// caddy subcommand works, and Tollgate's own run both as "tollgate tollgate
// token …" and as "tollgate token …".
package main

import (
	"os"
	"slices"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/tollgate-dev/tollgate/caddymodule"
)

func main() {
	if len(os.Args) > 1 && slices.Contains(caddymodule.Subcommands, os.Args[1]) {
		os.Args = slices.Insert(os.Args, 1, "tollgate")
	}
	caddycmd.Main()
}
