package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/steadhq/stead/pkg/agent"
	"github.com/steadhq/stead/pkg/fsutil"
	"github.com/steadhq/stead/pkg/runtime"
)

// The fence keeper is one process per node (not per pod), started by
// `stead agent` and outliving it: it kills the node's containers when the
// agent's Lease renewals stop, whether the agent lost the server or died.
// Its files are under <data-dir>/run.
func fenceKeeperFiles(dataDir string) (heartbeat agent.Heartbeat, lock, pid string) {
	run := filepath.Join(dataDir, "run")
	return agent.Heartbeat(filepath.Join(run, "lease-renewed")), filepath.Join(run, "fence-keeper.lock"), filepath.Join(run, "fence-keeper.pid")
}

func newFenceKeeperCommand(dataDir *string) *cobra.Command {
	return &cobra.Command{
		Use:    "fence-keeper",
		Short:  "Kill this node's containers when its agent stops renewing its Lease (started by stead agent)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			heartbeat, lockPath, pidPath := fenceKeeperFiles(*dataDir)
			if err := os.MkdirAll(filepath.Join(*dataDir, "logs"), 0o700); err != nil {
				return err
			}
			lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
			if err != nil {
				return err
			}
			defer lock.Close()
			if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
				return nil // one keeper per node is running already
			}
			if err := fsutil.WriteFile(pidPath, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
				return err
			}
			closeLog, err := setupLogging(filepath.Join(*dataDir, "logs", "fence-keeper.log"), 0)
			if err != nil {
				return err
			}
			defer closeLog()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			root := filepath.Join(*dataDir, "run")
			agent.RunFenceKeeper(ctx, heartbeat, func() (int, error) { return runtime.KillAll(root) })
			return nil
		},
	}
}

// ensureFenceKeeper starts the node's fence keeper unless one runs, in a
// session of its own so that neither a signal to the agent's process group
// nor the agent's death ends it.
func ensureFenceKeeper(dataDir string) error {
	_, lockPath, _ := fenceKeeperFiles(dataDir)
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o700); err != nil {
		return err
	}
	if fenceKeeperRuns(dataDir) {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(self, "fence-keeper", "--data-dir", dataDir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the fence keeper: %w", err)
	}
	// Not waited for: it outlives this process, and init reaps it.
	return cmd.Process.Release()
}

// fenceKeeperRuns reports whether the node's fence keeper runs: it holds
// its lock file for as long as it lives.
func fenceKeeperRuns(dataDir string) bool {
	_, lockPath, _ := fenceKeeperFiles(dataDir)
	lock, err := os.OpenFile(lockPath, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer lock.Close() // releases the probe's lock, if it got it
	return unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
}
