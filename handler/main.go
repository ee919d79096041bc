// Command handler is atlas-akv-guard's Azure Functions custom handler. See
// package app for the commands; `handler help` lists them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/app"
)

// version is set at build time (-ldflags -X main.version=…).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := app.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, version)
	stop()
	os.Exit(code)
}
