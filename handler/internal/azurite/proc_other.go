//go:build !linux

package azurite

import (
	"os"
	"syscall"
)

func procAttr() *syscall.SysProcAttr { return nil }

// signal kills the Azurite process (elsewhere than on Linux, alone).
func signal(pid int, _ bool) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}
