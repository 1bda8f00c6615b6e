package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// These tests make real volumes: sparse images, loop devices, ext4 mounts
// under the test's temporary directory. They need root, as stead does.

const volumeName0 = "pvc-uid-www"

func sized(pvc *corev1.PersistentVolumeClaim, size string) *corev1.PersistentVolumeClaim {
	pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse(size)
	return pvc
}

// provisionBound provisions the claim www-web-0 of size and binds it as the
// binder would; it returns the volume's directory.
func provisionBound(t *testing.T, size string) (*harness, string) {
	t.Helper()
	h := newHarness(t, sized(claim("www-web-0", "node-a"), size))
	h.sync("pvc/default/www-web-0")
	ctx := context.Background()
	pv, err := h.client.CoreV1().PersistentVolumes().Get(ctx, volumeName0, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv.Status.Phase = corev1.VolumeBound
	if _, err := h.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pvc, _ := h.client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "www-web-0", metav1.GetOptions{})
	pvc.Spec.VolumeName = volumeName0
	pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}
	if _, err := h.client.CoreV1().PersistentVolumeClaims("default").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return h, pv.Spec.Local.Path
}

// fill writes n bytes to a new file at path and syncs it: the first error
// either gives, ENOSPC included.
func fill(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte("stead"), mib/5+1)[:mib]
	for n > 0 {
		w := min(n, mib)
		if _, err := f.Write(chunk[:w]); err != nil {
			return err
		}
		n -= w
	}
	return f.Sync()
}

// size is the size of the filesystem mounted at dir, as df shows it.
func size(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.EXT4_SUPER_MAGIC {
		t.Fatalf("%s: filesystem type %#x, want ext4", dir, st.Type)
	}
	return int64(st.Blocks) * st.Bsize
}

func mounted(t *testing.T, dir string) bool {
	t.Helper()
	_, ok, err := mountPoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestVolumeCapacity(t *testing.T) {
	h, dir := provisionBound(t, "32Mi")
	image := filepath.Join(h.root, "images", volumeName0+".img")
	fi, err := os.Stat(image)
	if err != nil || fi.Size() != 32*mib {
		t.Fatalf("image %s: %v %v, want 32MiB", image, fi, err)
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used > 4*mib {
		t.Errorf("an empty 32MiB volume takes %d bytes of disk, want a sparse image", used)
	}
	if got := size(t, dir); got > 32*mib || got < 24*mib {
		t.Errorf("filesystem of %d bytes, want about 32MiB", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Errorf("new volume holds %v (%v), want nothing", entries, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("volume root %v %v, want mode 0777", fi, err)
	}

	if err := fill(filepath.Join(dir, "within"), 16*mib); err != nil {
		t.Fatalf("writing 16MiB to a 32MiB volume: %v", err)
	}
	err = fill(filepath.Join(dir, "past"), 32*mib)
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("writing 48MiB in all to a 32MiB volume: %v, want ENOSPC", err)
	}
}

// online is whether this process may grow a mounted ext4: with
// CAP_SYS_RESOURCE, as root has it outside containers. Without it (some
// sandboxes and containers drop it) volumes grow unmounted, when unused.
var online = func() bool {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		panic(err)
	}
	for line := range strings.Lines(string(status)) {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				panic(err)
			}
			return caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	panic("no CapEff in /proc/self/status")
}()

func TestVolumeExpand(t *testing.T) {
	t.Logf("CAP_SYS_RESOURCE (grow while mounted): %v", online)
	for _, tc := range []struct {
		name string
		// crash grows the image before the sync, as an expansion cut short
		// after its first step leaves it.
		crash bool
	}{{"expand", false}, {"finish an expansion cut short", true}} {
		t.Run(tc.name, func(t *testing.T) {
			h, dir := provisionBound(t, "32Mi")
			image := filepath.Join(h.root, "images", volumeName0+".img")
			if err := fill(filepath.Join(dir, "keep"), 8*mib); err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(dir, "keep"))
			if err != nil {
				t.Fatal(err)
			}
			loop, err := mountedLoop(image, dir)
			if err != nil || loop == "" {
				t.Fatalf("volume not mounted from a loop device: %q %v", loop, err)
			}
			if online {
				// A file held open through the expansion: the filesystem is in use.
				inUse, err := os.Open(filepath.Join(dir, "keep"))
				if err != nil {
					t.Fatal(err)
				}
				defer inUse.Close()
			}
			before := size(t, dir)
			if tc.crash {
				if err := os.Truncate(image, 64*mib); err != nil {
					t.Fatal(err)
				}
			}

			ctx := context.Background()
			pvc, _ := h.client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "www-web-0", metav1.GetOptions{})
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("64Mi")
			if _, err := h.client.CoreV1().PersistentVolumeClaims("default").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			h.sync("pvc/default/www-web-0")
			h.sync("pvc/default/www-web-0") // idempotent

			after := size(t, dir)
			if after < before+28*mib || after > 64*mib {
				t.Errorf("filesystem of %d bytes after expanding to 64MiB, was %d", after, before)
			}
			if fi, err := os.Stat(image); err != nil || fi.Size() != 64*mib {
				t.Errorf("image %v %v, want 64MiB", fi, err)
			}
			if now, err := mountedLoop(image, dir); now != loop || err != nil {
				t.Errorf("mounted from %q (%v) after expansion, was %s", now, err, loop)
			}
			if got, err := os.ReadFile(filepath.Join(dir, "keep")); err != nil || !bytes.Equal(got, want) {
				t.Errorf("data changed by the expansion (%v)", err)
			}
			// More than the whole volume held before.
			if err := fill(filepath.Join(dir, "more"), 40*mib); err != nil {
				t.Errorf("writing 40MiB after expanding to 64MiB: %v", err)
			}
			pv, _ := h.client.CoreV1().PersistentVolumes().Get(ctx, volumeName0, metav1.GetOptions{})
			pvc, _ = h.client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "www-web-0", metav1.GetOptions{})
			if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.String() != "64Mi" {
				t.Errorf("PV capacity %s, want 64Mi", q.String())
			}
			if q := pvc.Status.Capacity[corev1.ResourceStorage]; q.String() != "64Mi" {
				t.Errorf("claim status capacity %s, want 64Mi", q.String())
			}
		})
	}
}

// A pod's container sees its volume through a bind mount of its own.
func TestVolumeExpandInUse(t *testing.T) {
	h, dir := provisionBound(t, "32Mi")
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	pod := filepath.Join(h.root, "pod")
	if err := os.Mkdir(pod, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dir, pod, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	before := size(t, pod)
	ctx := context.Background()
	pvc, _ := h.client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "www-web-0", metav1.GetOptions{})
	pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("64Mi")
	if _, err := h.client.CoreV1().PersistentVolumeClaims("default").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := h.trySync("pvc/default/www-web-0")
	pv, _ := h.client.CoreV1().PersistentVolumes().Get(ctx, volumeName0, metav1.GetOptions{})
	capacity := pv.Spec.Capacity[corev1.ResourceStorage]
	if online {
		if err != nil || size(t, pod) < before+28*mib || capacity.String() != "64Mi" {
			t.Fatalf("growing a volume in use: %v; the pod sees %d bytes, was %d; PV capacity %s", err, size(t, pod), before, capacity.String())
		}
		return
	}
	// Left alone while the pod has it, and grown once the pod is gone.
	if err == nil || capacity.String() != "32Mi" {
		t.Fatalf("growing a volume in use without CAP_SYS_RESOURCE: %v, PV capacity %s; want an error and 32Mi", err, capacity.String())
	}
	if got, err := os.ReadFile(filepath.Join(dir, "data")); string(got) != "kept" || err != nil || !mounted(t, dir) {
		t.Fatalf("volume after a refused expansion: data %q %v, mounted %v", got, err, mounted(t, dir))
	}
	// A pod about to mount it meanwhile mounts it as it is.
	h.refresh()
	if err := h.l.PrepareMount(ctx, pvc); err != nil {
		t.Fatalf("PrepareMount of a volume in use: %v, want it mounted as it is", err)
	}
	if err := unix.Unmount(pod, 0); err != nil {
		t.Fatal(err)
	}
	// The next pod's mount finishes the expansion first.
	h.refresh()
	if err := h.l.PrepareMount(ctx, pvc); err != nil {
		t.Fatal(err)
	}
	if got := size(t, dir); got < before+28*mib {
		t.Errorf("filesystem of %d bytes once the pod is gone, was %d", got, before)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "data")); string(got) != "kept" || err != nil {
		t.Errorf("data %q %v after the expansion", got, err)
	}
}

func TestVolumeReclaim(t *testing.T) {
	for _, policy := range []corev1.PersistentVolumeReclaimPolicy{corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRetain} {
		t.Run(string(policy), func(t *testing.T) {
			h, dir := provisionBound(t, "32Mi")
			image := filepath.Join(h.root, "images", volumeName0+".img")
			if err := fill(filepath.Join(dir, "data"), mib); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			pv, _ := h.client.CoreV1().PersistentVolumes().Get(ctx, volumeName0, metav1.GetOptions{})
			pv.Spec.PersistentVolumeReclaimPolicy = policy
			pv.Status.Phase = corev1.VolumeReleased
			if _, err := h.client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			h.sync("pv/" + volumeName0)
			_, pvErr := h.client.CoreV1().PersistentVolumes().Get(ctx, volumeName0, metav1.GetOptions{})

			if policy == corev1.PersistentVolumeReclaimDelete {
				if pvErr == nil {
					t.Error("PV kept")
				}
				for _, path := range []string{dir, image} {
					if _, err := os.Stat(path); !os.IsNotExist(err) {
						t.Errorf("%s kept (%v)", path, err)
					}
				}
				if loops := loopsUnder(h.root); len(loops) != 0 {
					t.Errorf("loop devices left attached: %v", loops)
				}
				h.sync("pv/" + volumeName0) // nothing left to do
				return
			}
			if pvErr != nil {
				t.Errorf("PV: %v", pvErr)
			}
			if fi, err := os.Stat(image); err != nil || fi.Size() != 32*mib {
				t.Errorf("image %v %v, want kept", fi, err)
			}
			if !mounted(t, dir) {
				t.Error("retained volume unmounted")
			}
			if fi, err := os.Stat(filepath.Join(dir, "data")); err != nil || fi.Size() != mib {
				t.Errorf("retained data: %v %v", fi, err)
			}
			// The administrator deletes the PV: the data stays.
			if err := h.client.CoreV1().PersistentVolumes().Delete(ctx, volumeName0, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			h.sync("pv/" + volumeName0)
			if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
				t.Errorf("data of a retained volume after its PV went: %v", err)
			}
		})
	}
}

func TestVolumeRemount(t *testing.T) {
	h, dir := provisionBound(t, "32Mi")
	image := filepath.Join(h.root, "images", volumeName0+".img")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(data, []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if got, err := os.ReadFile(data); string(got) != "kept" || err != nil {
			t.Fatalf("%s: data %q %v", when, got, err)
		}
		if loop, err := mountedLoop(image, dir); loop == "" || err != nil {
			t.Fatalf("%s: mounted from %q %v", when, loop, err)
		}
	}
	unmountVolume := func() {
		t.Helper()
		if err := unmount(dir); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Fatalf("data visible with the volume unmounted: %v", err)
		}
	}

	// A reboot: stead starts again with nothing mounted, and a format cut
	// short by the crash lies next to the images.
	unmountVolume()
	stale := filepath.Join(h.root, "images", "pvc-other.img.tmp")
	if err := os.WriteFile(stale, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.l = NewLocalPath("node-a", h.root, h.client, h.factory)
	check("after a restart")
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("unfinished image %s kept: %v", stale, err)
	}

	// Someone unmounts it while stead runs: the volume's next sync mounts it.
	unmountVolume()
	h.sync("pv/" + volumeName0)
	check("after a sync")
	h.sync("pv/" + volumeName0) // mounted once, not twice
	if err := unix.Unmount(dir, 0); err != nil || mounted(t, dir) {
		t.Errorf("mounted more than once at %s (%v)", dir, err)
	}

	// Something else mounted there is not taken for the volume.
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := h.trySync("pv/" + volumeName0); err == nil {
		t.Error("a tmpfs at the volume's path passed for the volume")
	}
}

func TestVolumeNeverReformatted(t *testing.T) {
	h, dir := provisionBound(t, "32Mi")
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A crash after the volume was made but before its PV was: the claim is
	// pending still, without a PV.
	ctx := context.Background()
	if err := h.client.CoreV1().PersistentVolumes().Delete(ctx, volumeName0, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	pvc, _ := h.client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "www-web-0", metav1.GetOptions{})
	pvc.Spec.VolumeName = ""
	pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
	if _, err := h.client.CoreV1().PersistentVolumeClaims("default").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := unmount(dir); err != nil {
		t.Fatal(err)
	}
	h.sync("pvc/default/www-web-0")
	if _, err := h.client.CoreV1().PersistentVolumes().Get(ctx, volumeName0, metav1.GetOptions{}); err != nil {
		t.Errorf("PV: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "data")); string(got) != "kept" || err != nil {
		t.Errorf("data %q %v after provisioning again, want kept", got, err)
	}
}

func TestImageSize(t *testing.T) {
	for request, want := range map[string]int64{"1Gi": 1024 * mib, "1G": 954 * mib, "1Ki": minImageSize, "100Mi": 100 * mib, "100M": 96 * mib} {
		if got := imageSize(resource.MustParse(request)); got != want {
			t.Errorf("imageSize(%s) = %d, want %d", request, got, want)
		}
	}
}

// BenchmarkProvision1Gi measures making a 1Gi volume (image, mkfs, loop,
// mount) and the disk an empty one takes.
func BenchmarkProvision1Gi(b *testing.B) {
	h := newHarness(b)
	var used, avail int64
	for i := range b.N {
		name := fmt.Sprintf("pvc-%d", i)
		image, dir := h.l.imagePath(name), h.l.volumeDir(name)
		if err := h.l.makeVolume(image, dir, imageSize(resource.MustParse("1Gi"))); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		var st unix.Stat_t
		var fs unix.Statfs_t
		if err := unix.Stat(image, &st); err != nil {
			b.Fatal(err)
		}
		if err := unix.Statfs(dir, &fs); err != nil {
			b.Fatal(err)
		}
		used, avail = st.Blocks*512, int64(fs.Bavail)*fs.Bsize
		if err := h.l.deleteVolume(image, dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(used)/mib, "MiB-disk/volume")
	b.ReportMetric(float64(avail)/mib, "MiB-free/volume")
}

// loopsUnder lists the loop devices whose backing file is under root.
func loopsUnder(root string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var loops []string
	for _, file := range files {
		backing, err := os.ReadFile(file)
		if err == nil && strings.HasPrefix(string(backing), root+"/") {
			loops = append(loops, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(file))))
		}
	}
	return loops
}

// cleanupVolumes unmounts everything under root and detaches loop devices
// left behind, failing the test for those: the volume code must not leak
// them.
func cleanupVolumes(t testing.TB, root string) {
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	var points []string
	for line := range strings.Lines(string(mountinfo)) {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		point := unescapeMountinfo(fields[4])
		if strings.HasPrefix(point, root+"/") {
			points = append(points, point)
		}
	}
	slices.Reverse(points)
	for _, point := range points {
		if err := unix.Unmount(point, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmount %s: %v", point, err)
			_ = unix.Unmount(point, unix.MNT_DETACH)
		}
	}
	// Autoclear detaches a loop device once its filesystem is unmounted;
	// what is still attached after a while was never mounted or closed.
	deadline := time.Now().Add(5 * time.Second)
	for len(loopsUnder(root)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, loop := range loopsUnder(root) {
		t.Errorf("loop device %s left attached", loop)
		if f, err := os.Open(loop); err == nil {
			_ = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
			f.Close()
		}
	}
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of paths in
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
