package main

import (
	"os"
	"runtime/debug"
)

// upGCPercent is the collector's target once a server is up. Go's default,
// 100, lets the heap grow to twice what is live before it collects; the
// start allocates hundreds of MB that are garbage at once (OpenAPI specs,
// route tables), and at that default it starts fastest. Idle, a server
// allocates about 400 KB/s, and at 50 a collection every minute or so keeps
// about 40 MB less resident, for well under a percent of one core.
const upGCPercent = 50

// collectForIdle sets upGCPercent, unless GOGC says otherwise, and gives
// back to the system what the start's garbage left free: the runtime would
// otherwise keep it, as its heap grew that far once.
func collectForIdle() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(upGCPercent)
	go debug.FreeOSMemory()
}
