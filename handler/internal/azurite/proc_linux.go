package azurite

import "syscall"

// procAttr puts Azurite in its own process group, killed when this process
// dies first.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signal stops Azurite's process group (node and what it spawned).
func signal(pid int, kill bool) {
	syscall.Kill(-pid, map[bool]syscall.Signal{false: syscall.SIGTERM, true: syscall.SIGKILL}[kill])
}
