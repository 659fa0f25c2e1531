//go:build unix

package worker

import (
	"os/exec"
	"syscall"
)

// killGroup runs the program in a process group of its own and makes
// cancelling it kill the whole group, so that a child the program started
// (and that holds its output open) does not outlive the attempt.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
