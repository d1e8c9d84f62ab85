package caddymodule

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/auth"
	"github.com/tollgate-dev/tollgate/meter"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "tollgate",
		Usage: "<command> [flags]",
		Short: "Tollgate's commands: credit, debit, balance, ledger, usage, accounts, verify and token",
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(tokenCommand())
			cmd.AddCommand(operatorCommands()...)
		},
	})
}

// Subcommands lists the tollgate subcommands, which the tollgate binary also
// runs without the tollgate prefix.
var Subcommands = []string{"credit", "debit", "balance", "ledger", "usage", "accounts", "verify", "token"}

func tokenCommand() *cobra.Command {
	var (
		account, secret, secretFile, issuer, audience, scope string
		ttl                                                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token --account <id> [--secret-file F | --secret S] [--issuer I] [--audience A] [--scope S] [--ttl 1h]",
		Short: "Mints an HS256 token, for development only",
		Long: `Mints an HS256 token for trying Tollgate out. For development only:
production tokens come from your identity provider.

The secret is --secret, the contents of --secret-file, or the
TOLLGATE_JWT_SECRET environment variable. The token alone is printed on
standard output.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !meter.ValidAccount(account) {
				return errors.New("--account must be 1-128 printable ASCII bytes without spaces, and not . or ..")
			}
			key, err := tokenSecret(secret, secretFile)
			if err != nil {
				return err
			}
			now := time.Now()
			claims := jwt.MapClaims{"sub": account, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
			if issuer != "" {
				claims["iss"] = issuer
			}
			if audience != "" {
				claims["aud"] = audience
			}
			if scope != "" {
				claims["scope"] = scope
			}
			token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), token)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&account, "account", "", "the account the token names (its sub)")
	f.StringVar(&secret, "secret", "", "the HMAC secret")
	f.StringVar(&secretFile, "secret-file", "", "a file holding the HMAC secret")
	f.StringVar(&issuer, "issuer", "", "the token's iss")
	f.StringVar(&audience, "audience", "", "the token's aud")
	f.StringVar(&scope, "scope", "", "the token's scope, space-separated")
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	return cmd
}

// tokenSecret returns the secret from the flag, the file or the environment.
func tokenSecret(secret, file string) ([]byte, error) {
	if secret != "" && file != "" {
		return nil, errors.New("give --secret or --secret-file, not both")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading the secret: %w", err)
		}
		secret = strings.TrimRight(string(b), "\r\n")
	}
	if secret == "" {
		secret = os.Getenv("TOLLGATE_JWT_SECRET")
	}
	if len(secret) < auth.MinHMACSecret {
		return nil, fmt.Errorf("the secret must be at least %d bytes: give --secret, --secret-file or TOLLGATE_JWT_SECRET", auth.MinHMACSecret)
	}
	return []byte(secret), nil
}
