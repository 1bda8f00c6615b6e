package agent

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestFormatMapIsTheKubeletsDownwardAPIFormat(t *testing.T) {
	for _, tc := range []struct {
		in   map[string]string
		want string
	}{
		{nil, ""},
		{map[string]string{"b": "2", "a": "1"}, "a=\"1\"\nb=\"2\""},
		{map[string]string{"k": "say \"hi\"\n"}, `k="say \"hi\"\n"`},
	} {
		if got := formatMap(tc.in); got != tc.want {
			t.Errorf("formatMap(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSetVolumeOwnershipGivesTheVolumeToTheFSGroup(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	psc := &corev1.PodSecurityContext{FSGroup: ptr.To[int64](4242)}
	if err := setVolumeOwnership(dir, psc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		mode fs.FileMode
	}{
		{dir, fs.ModeDir | fs.ModeSetgid | 0o070},
		{filepath.Join(dir, "sub"), fs.ModeDir | fs.ModeSetgid | 0o070},
		{filepath.Join(dir, "sub", "f"), 0o060},
	} {
		gid, mode := ownership(t, tc.path)
		if gid != 4242 || mode&tc.mode != tc.mode {
			t.Errorf("%s: gid %d mode %v, want gid 4242 and %v set", tc.path, gid, mode, tc.mode)
		}
	}
	// What a symlink points at is not the volume's to change.
	if gid, _ := ownership(t, "/etc/passwd"); gid == 4242 {
		t.Fatal("followed a symlink out of the volume")
	}

	// OnRootMismatch leaves a volume whose root is right alone.
	if err := os.Chown(filepath.Join(dir, "sub", "f"), -1, 0); err != nil {
		t.Fatal(err)
	}
	psc.FSGroupChangePolicy = ptr.To(corev1.FSGroupChangeOnRootMismatch)
	if err := setVolumeOwnership(dir, psc); err != nil {
		t.Fatal(err)
	}
	if gid, _ := ownership(t, filepath.Join(dir, "sub", "f")); gid != 0 {
		t.Errorf("OnRootMismatch walked a volume whose root matched: gid %d", gid)
	}
}

func ownership(t *testing.T, path string) (uint32, fs.FileMode) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return statGID(info), info.Mode()
}

func statGID(info fs.FileInfo) uint32 {
	return info.Sys().(*syscall.Stat_t).Gid
}
