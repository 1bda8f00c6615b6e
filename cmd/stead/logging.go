package main

import (
	"flag"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"google.golang.org/grpc/grpclog"
	"k8s.io/klog/v2"
)

// setupLogging sends the upstream components' logs to a file: a terminal
// running `stead up` shows stead's progress, not thousands of klog lines.
func setupLogging(path string, verbosity int) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for name, value := range map[string]string{
		"logtostderr":     "false",
		"alsologtostderr": "false",
		"stderrthreshold": "FATAL",
		"one_output":      "true",
		"v":               strconv.Itoa(verbosity),
	} {
		if err := fs.Set(name, value); err != nil {
			return nil, err
		}
	}
	klog.SetOutput(f)
	log.SetOutput(f)
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, f, f))
	return func() { klog.Flush(); f.Close() }, nil
}

// ignoreBrokenPipe keeps a long-running stead alive when whatever reads
// its progress lines (a pipe, a terminal's session) is gone: Go kills a
// program that writes to a broken stdout or stderr unless SIGPIPE is
// notified, and stead would die mid-stop instead of stopping cleanly (or
// cleaning up, with --cleanup). Its writes then just fail with EPIPE.
// Notify, not signal.Ignore: an ignored signal stays ignored in the
// processes stead starts, the pods' among them.
func ignoreBrokenPipe() { signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE) }
