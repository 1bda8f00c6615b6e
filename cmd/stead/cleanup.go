package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/steadhq/stead/pkg/fsutil"
	"github.com/steadhq/stead/pkg/network"
	"github.com/steadhq/stead/pkg/proxy"
	"github.com/steadhq/stead/pkg/runtime"
)

// proxyTable is the node's nftables table: the default one, or one per
// bridge for each further cluster's node on this machine.
func proxyTable(bridge string) string {
	if bridge == "stead0" {
		return proxy.DefaultTable
	}
	return proxy.DefaultTable + "-" + bridge
}

// removeNode undoes what a stopped node leaves on this machine by design
// (its pods run on, with their volumes, network and Service rules, so that
// the next start adopts them): `--cleanup`, for a machine that leaves the
// cluster. It goes on past a failure and reports them all.
func removeNode(ctx context.Context, dataDir string, o nodeOptions, clusterCIDR netip.Prefix) error {
	var errs []error
	// The fence keeper outlives the agent by design; it would only kill
	// what is killed here anyway. Its pid file is trusted only while it
	// holds its lock: a pid from an older run may be another process's now.
	if _, _, pidFile := fenceKeeperFiles(dataDir); fenceKeeperRuns(dataDir) {
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
					errs = append(errs, fmt.Errorf("stop the fence keeper: %w", err))
				}
			}
		}
	}
	if err := runtime.DestroyAll(filepath.Join(dataDir, "run"), 30*time.Second); err != nil {
		errs = append(errs, fmt.Errorf("containers: %w", err))
	} else if err := removeSandboxes(dataDir); err != nil {
		errs = append(errs, fmt.Errorf("pod sandboxes: %w", err))
	}
	// Volumes, containers' root filesystems, memory-backed emptyDirs.
	if err := fsutil.UnmountBelow(dataDir); err != nil {
		errs = append(errs, err)
	}
	if nft, err := proxy.NewNFTables(proxyTable(o.bridge)); err != nil {
		errs = append(errs, err)
	} else if err := proxy.Cleanup(ctx, nft); err != nil {
		errs = append(errs, fmt.Errorf("Service rules: %w", err))
	}
	if err := network.RemoveRoutes(clusterCIDR); err != nil {
		errs = append(errs, err)
	}
	if err := network.RemoveBridgeNamed(o.bridge); err != nil {
		errs = append(errs, fmt.Errorf("bridge %s: %w", o.bridge, err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("--cleanup: %w", err)
	}
	return nil
}

// removeSandboxes removes what each pod had beside its containers: its
// cgroup (one in every hierarchy) and its namespaces' mounts.
func removeSandboxes(dataDir string) error {
	pods, err := runtime.New(filepath.Join(dataDir, "run"), podCgroupParent)
	if err != nil {
		return err
	}
	uids, err := pods.ListSandboxes()
	if err != nil {
		return err
	}
	var errs []error
	for _, uid := range uids {
		errs = append(errs, pods.RemoveSandbox(uid))
	}
	return errors.Join(errs...)
}
