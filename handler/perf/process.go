package perf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// Build builds the main package pkg into dir/name the way `make build` does
// (static, -trimpath, -ldflags '-s -w') and returns its path and size.
func Build(ctx context.Context, dir, pkg, name string) (path string, size int64, err error) {
	path = dir + "/" + name
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", path, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", 0, fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	return path, fi.Size(), nil
}

// GuardEnv is a valid configuration of the guard for a start-up measurement:
// one project, a service account, storage that is only opened on first use,
// a managed identity endpoint that is never called before a reconcile.
func GuardEnv() []string {
	return []string{
		"ATLAS_PROJECT_IDS=" + ProjectID(0),
		"ATLAS_CLIENT_ID=" + SAClientID,
		"ATLAS_CLIENT_SECRET=" + SASecret,
		"AzureWebJobsStorage=UseDevelopmentStorage=true",
		"GUARD_SCHEDULE=0 */1 * * * *",
		"IDENTITY_ENDPOINT=http://127.0.0.1:9/msi/token",
		"IDENTITY_HEADER=perf",
		"GUARD_LOG_LEVEL=info",
	}
}

// Proc is a started handler process.
type Proc struct {
	cmd   *exec.Cmd
	waitc chan error
	URL   string
	// Ready is the time from just before exec to the first HTTP answer to
	// GET / (what the Functions host waits for).
	Ready time.Duration
}

// StartProc starts bin with env (plus FUNCTIONS_CUSTOMHANDLER_PORT on a free
// loopback port), its output discarded, and polls GET / every 200µs until any
// HTTP answer, for at most limit.
func StartProc(bin string, env []string, limit time.Duration) (*Proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(env, "FUNCTIONS_CUSTOMHANDLER_PORT="+strconv.Itoa(port), "PATH="+os.Getenv("PATH"))
	p := &Proc{cmd: cmd, URL: "http://127.0.0.1:" + strconv.Itoa(port)}
	client := &http.Client{Timeout: 100 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		resp, err := client.Get(p.URL + "/")
		if err == nil {
			resp.Body.Close()
			p.Ready = time.Since(start)
			p.waitc = exited
			return p, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("%s exited before it was ready: %v", bin, err)
		case <-time.After(200 * time.Microsecond):
		}
		if time.Since(start) > limit {
			cmd.Process.Kill()
			<-exited
			return nil, fmt.Errorf("%s not ready after %s", bin, limit)
		}
	}
}

// Status returns the process's VmRSS and VmHWM in bytes.
func (p *Proc) Status() (rss, hwm uint64, err error) {
	return ProcStatus(strconv.Itoa(p.cmd.Process.Pid))
}

// Stop sends SIGTERM and waits up to 5s for the process to exit, then kills
// it.
func (p *Proc) Stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.waitc:
		return nil
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.waitc
		return errors.New("did not stop within 5s of SIGTERM")
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
