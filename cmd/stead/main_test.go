package main

import (
	"slices"
	"testing"
)

func TestKubectlArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		dataDir string
		kubectl []string
		ok      bool
	}{
		{[]string{"kubectl", "get", "pods"}, "", []string{"kubectl", "get", "pods"}, true},
		{[]string{"--data-dir", "/tmp/d", "kubectl", "get", "nodes"}, "/tmp/d", []string{"kubectl", "get", "nodes"}, true},
		{[]string{"--data-dir=/tmp/d", "kubectl", "--data-dir", "x"}, "/tmp/d", []string{"kubectl", "--data-dir", "x"}, true},
		{[]string{"up", "--data-dir", "/tmp/d"}, "", nil, false},
		{[]string{"--data-dir", "/tmp/d", "image", "ls"}, "", nil, false},
		{[]string{"--data-dir"}, "", nil, false},
		{nil, "", nil, false},
	} {
		dataDir, kubectl, ok := kubectlArgs(tc.args)
		if dataDir != tc.dataDir || !slices.Equal(kubectl, tc.kubectl) || ok != tc.ok {
			t.Errorf("kubectlArgs(%q) = %q, %q, %v; want %q, %q, %v", tc.args, dataDir, kubectl, ok, tc.dataDir, tc.kubectl, tc.ok)
		}
	}
}
