// Package runtime runs a node's containers in-process with libcontainer,
// the library inside runc: no runtime daemon, and no shim process per pod
// or per container. The stead binary re-executes itself as each container's
// init, so main must call Init before anything else, and the binary must be
// built with cgo (libcontainer's nsenter runs as a C constructor).
//
// # Sandboxes and containers
//
// A pod's sandbox (EnsureSandbox) is a network, an IPC and a UTS namespace,
// each bind-mounted under the runtime's root so that they outlive every
// process in them and stead itself; the pod's hostname is set in its UTS
// namespace, loopback is up, and a tmpfs is the pod's /dev/shm. A pod that
// asks for the node's network (hostNetwork) has stead's own network and UTS
// namespaces bound there instead, and one that asks for its IPC (hostIPC)
// stead's IPC namespace and the node's /dev/shm. The pod has a cgroup,
// <cgroupParent>/pod<uid>, with each container's beneath it. A container
// joins its sandbox's network, IPC and UTS namespaces (as the kubelet's
// containers share the pause container's) and has a mount namespace of its
// own, and a PID namespace of its own unless it is given one to join
// (ContainerSpec.PIDNamespace: an ephemeral container's target's, or the
// node's for hostPID). Its configuration is an OCI runtime spec built
// from specconv.Example and converted by specconv, so capabilities, devices,
// masked and read-only paths and /dev/stdout, /dev/fd and friends are what
// runc gives. Its root filesystem is an overlay of the image's layers with
// an upper directory of its own. cgroups use the cgroupfs driver; v1, v2 and
// hybrid hosts all work, libcontainer's manager choosing by
// cgroups.IsCgroup2UnifiedMode.
//
// # Logs
//
// A container's stdout and stderr are FIFOs in its directory. The container
// is given each FIFO opened for reading and writing, so it never reads EOF
// and never gets SIGPIPE or EPIPE, whether or not stead is there: when no
// one reads, its writes block once the pipe's buffer (1 MiB) is full, as
// they would with a stalled shim. stead reads the FIFOs and appends CRI log
// records, "<RFC3339Nano time> stdout|stderr F|P <line>", to the
// container's LogPath, so `kubectl logs --timestamps` works and the kubelet's
// log format is kept. When stead restarts, Load opens the FIFOs again and
// carries on: what the container wrote meanwhile waits in the pipe and is
// written then, stamped with the time it was read; lines are only lost if
// the container also exits while stead is away (a pipe's contents go with
// its last writer) or, on a crash, the piece of one line stead had read and
// not yet written. Writing to the file directly from the container would
// survive restarts too, but loses the per-line timestamps and the stream
// tag that `kubectl logs` relies on.
//
// # Standard input, terminals and Attach
//
// A container with a terminal (ContainerSpec.TTY) gets one as the kubelet's
// runtimes give it: libcontainer's init makes it inside the container's
// devpts and sends its master side to stead, which reads it for the log
// (all of it as stdout, lines without the terminal's \r, as containerd
// logs it) and for attached clients, and writes their input to it. A
// container with Stdin and no terminal reads a pipe. Attach passes the
// output from the moment of attaching, through the same copy that writes
// the log, and the client's input to the process; see Attach for when it
// detaches and how StdinOnce closes the process's input.
//
// What survives a restart of stead follows from which process holds the
// other end, there being no shim to hold it:
//
//   - Stdin without StdinOnce: the process's input is a FIFO in its
//     directory, which the container holds open for reading and writing,
//     as it does its output FIFOs. It never reads EOF, and a restarted
//     stead's clients write to it as the first's did.
//   - StdinOnce: stead holds the only write end, as it must for closing
//     it to give the process EOF; when stead exits, that is what happens,
//     as if the first client had detached. That client's session went
//     with stead anyway: it was served by stead.
//   - A terminal: only stead holds its master side, which the container
//     cannot be given (it does not exist until the init makes the
//     terminal, after the container's process has its files). When stead
//     exits, the terminal hangs up: the session gets SIGHUP (which a
//     container's init ignores unless it handles it), reads return EOF
//     and writes fail. An interactive shell exits, and a restart policy
//     restarts it; an adopted container's terminal is gone, and Attach
//     says so. Keeping it would need a process that outlives stead to
//     hold the master: a shim again.
//
// # Restarts of stead, and exit codes
//
// Containers are never tied to stead's life: no parent-death signal, a
// session of their own (nsexec calls setsid), namespaces held by bind
// mounts, output into FIFOs that need no reader. The exceptions are a
// StdinOnce input and a terminal, above. Load adopts what a
// previous stead started, and never starts anything: a container whose
// init still waited for its go-ahead (stead died inside Start) never ran
// its process, and is killed so that it reads as stopped.
//
// The process that starts a container is its parent and the only one that
// can learn its exit status: it waits for it and writes the code, the time
// and whether the cgroup saw an OOM kill to exit.json in the container's
// directory, so an exit that happened before a restart is still known
// after it. A stead that adopts a running container is not its parent: it
// learns when the container exits (through a pidfd, so Exited and
// FinishedAt are prompt) but not its status, which went to whichever
// process inherited the container (the host's init); the same holds for a
// container that exits while no stead runs. State then reports
// ExitCodeUnknown, or 137 and OOMKilled when the container's cgroup
// recorded an OOM kill; the kubelet reports the like as
// ContainerStatusUnknown. Knowing the status in every case would need a
// process that outlives stead and is the container's parent: a shim, the
// very process this design does without.
//
// # Layout under the root directory
//
//	state/<id>/              libcontainer's state
//	containers/<id>/         container.json (what Exec and Load need), exit.json,
//	                         rootfs/ (the overlay), upper/, work/, stdout, stderr,
//	                         stdin (Stdin without StdinOnce or a terminal),
//	                         termination-log
//	sandboxes/<pod uid>/     net, ipc, uts (namespace bind mounts), shm/ (tmpfs)
package runtime
