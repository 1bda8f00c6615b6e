package runtime

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// libcontainer starts a container's process in three stages (nsexec), and
// the last two are made children of stead itself. When the first stage
// fails, libcontainer reaps only that one: a second or third stage that
// has died already stays a zombie (a test here that killed containers
// with execs under way piled up 268 second stages in a few minutes). A
// third stage lives in the container's PID namespace, and the kernel lets
// a namespace's init finish dying only once every other process in the
// namespace has been reaped: a container killed as an exec (a probe) was
// starting in it never exited. That exec is the one that starts right
// after the kill (libcontainer holds one lock over both), in the moment
// before the namespace closes. strayStages is what the two stages call
// themselves.
var strayStages = [][]byte{[]byte("runc:[1:CHILD]"), []byte("runc:[2:INIT]")}

// strayGrace is how long a dead stage is left to its owner. Whoever waits
// for a process reaps it at once; one left that long has nobody.
var strayGrace = time.Second

var (
	strayOnce    sync.Once
	strayTrigger = make(chan struct{}, 1)
)

// reapStrayStages asks for the dead stages that nobody reaps to be reaped,
// in the background: a failed start or exec calls it, since that is how
// libcontainer comes to leave them.
func reapStrayStages() {
	strayOnce.Do(func() {
		go func() {
			for range strayTrigger {
				// The stages of a failed start may die a moment after the
				// failure: passes go on, a grace apart, until one after
				// the first finds none.
				for pass := 0; ; pass++ {
					if reapStrays(strayGrace) > 0 {
						continue
					}
					if pass > 0 {
						break
					}
					time.Sleep(strayGrace)
				}
			}
		}()
	})
	select {
	case strayTrigger <- struct{}{}:
	default: // a pass is due already, and sees these too
	}
}

// reapStrays reaps the children of this process that are dead stages and
// are still unreaped after grace. It holds each through a pidfd from the
// moment it is seen, so that what it reaps is the process it saw, even if
// the owner reaps that and the pid is reused in between.
func reapStrays(grace time.Duration) (reaped int) {
	var held []int
	defer func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	}()
	for _, pid := range children() {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue
		}
		// Looked at after the pidfd is open: it is the process seen now.
		if !deadStage(pid) {
			unix.Close(fd)
			continue
		}
		held = append(held, fd)
	}
	if len(held) == 0 {
		return 0
	}
	time.Sleep(grace)
	for _, fd := range held {
		var info unix.Siginfo
		// ECHILD: its owner reaped it after all.
		if err := unix.Waitid(unix.P_PIDFD, fd, &info, unix.WEXITED|unix.WNOHANG, nil); err == nil && info.Signo != 0 {
			reaped++
		}
	}
	return reaped
}

// children are this process's children, whichever of its threads made
// them.
func children() []int {
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var pids []int
	for _, path := range tasks {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for field := range strings.FieldsSeq(string(data)) {
			if pid, err := strconv.Atoi(field); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// deadStage tells whether pid is a zombie that is one of libcontainer's
// stages.
func deadStage(pid int) bool {
	comm, state, ok := procState(pid)
	if !ok || state != 'Z' {
		return false
	}
	for _, stage := range strayStages {
		if bytes.Equal(comm, stage) {
			return true
		}
	}
	return false
}

// procState is pid's name (comm) and state, from /proc/<pid>/stat: "pid
// (comm) state ...", where comm may hold spaces and parentheses, so the
// state follows the last ")".
func procState(pid int) (comm []byte, state byte, ok bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, 0, false
	}
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open || len(stat) < end+3 {
		return nil, 0, false
	}
	return stat[open+1 : end], stat[end+2], true
}
