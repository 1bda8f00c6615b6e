package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// A pod's own volumes as the kubelet gives them: emptyDir on disk and in
// memory (sized), downwardAPI, and the fsGroup that owns what it writes.
func TestVolumesEmptyDirDownwardAPIAndFSGroup(t *testing.T) {
	c := sharedCluster(t)
	const ns = "volumes"
	c.mustKubectl("", "create", "namespace", ns)
	kubectl := func(args ...string) string {
		t.Helper()
		return c.mustKubectl("", append([]string{"-n", ns}, args...)...)
	}
	c.mustKubectl(`apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels: {app: vols, tier: test}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000}
  containers:
  - name: main
    image: busybox:1.28.4
    command: [sleep, "3600"]
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: mem, mountPath: /mem}
    - {name: info, mountPath: /info}
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 16Mi}}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
`, "-n", ns, "apply", "-f", "-")
	eventually(t, 60*time.Second, "vols Running", func() error {
		if phase := kubectl("get", "pod", "vols", "-o", "jsonpath={.status.phase}"); phase != "Running" {
			return fmt.Errorf("phase %q", phase)
		}
		return nil
	})

	// The process is in the fsGroup, and what it writes belongs to it.
	if id := kubectl("exec", "vols", "--", "id"); !strings.Contains(id, "uid=1000") || !strings.Contains(id, "2000") {
		t.Errorf("id in the container: %q, want uid 1000 and group 2000 among its groups", id)
	}
	out := kubectl("exec", "vols", "--", "sh", "-c", "echo hi > /scratch/f && ls -ln /scratch/f")
	if f := strings.Fields(out); len(f) < 4 || f[3] != "2000" {
		t.Errorf("a file written to the emptyDir: %q, want group 2000", out)
	}

	// Memory-backed: a tmpfs of the size asked, full past it.
	df := kubectl("exec", "vols", "--", "df", "-k", "/mem")
	if !strings.Contains(df, "tmpfs") || !strings.Contains(df, "16384") {
		t.Errorf("df /mem: %q, want a 16384 KiB tmpfs", df)
	}
	if out, err := c.kubectl("", "-n", ns, "exec", "vols", "--", "dd", "if=/dev/zero", "of=/mem/big", "bs=1M", "count=20"); err == nil || !strings.Contains(out, "No space left") {
		t.Errorf("writing 20 MiB to a 16 MiB memory volume: %v %q, want ENOSPC", err, out)
	}

	// downwardAPI files.
	if got := kubectl("exec", "vols", "--", "cat", "/info/name"); got != "vols" {
		t.Errorf("/info/name = %q", got)
	}
	if got := kubectl("exec", "vols", "--", "cat", "/info/labels"); !strings.Contains(got, `app="vols"`) || !strings.Contains(got, `tier="test"`) {
		t.Errorf("/info/labels = %q", got)
	}

	// The tmpfs goes with the pod.
	uid := kubectl("get", "pod", "vols", "-o", "jsonpath={.metadata.uid}")
	kubectl("delete", "pod", "vols", "--wait=true")
	eventually(t, 30*time.Second, "the pod's tmpfs unmounted", func() error {
		if mounts := readMounts(t); strings.Contains(mounts, uid) {
			return fmt.Errorf("mounts of pod %s remain:\n%s", uid, mounts)
		}
		return nil
	})
}

// readMounts is the host's mount table.
func readMounts(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
