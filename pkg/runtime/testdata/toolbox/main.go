// Command toolbox is the only program in the runtime tests' image: a few
// commands, separated by ";" arguments, each printing what a test checks.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	// A container's init gets only the signals it handles: exit on TERM
	// as a well-behaved program does.
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	go func() {
		<-terms
		os.Exit(143)
	}()

	var command []string
	for _, arg := range append(os.Args[1:], ";") {
		if arg != ";" {
			command = append(command, arg)
			continue
		}
		if len(command) > 0 {
			run(command[0], command[1:])
		}
		command = nil
	}
}

func run(name string, args []string) {
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch name {
	case "echo":
		fmt.Println(strings.Join(args, " "))
	case "errecho":
		fmt.Fprintln(os.Stderr, strings.Join(args, " "))
	case "partial": // no newline
		fmt.Print(strings.Join(args, " "))
	case "long":
		n, _ := strconv.Atoi(arg(0))
		fmt.Println(strings.Repeat("x", n))
	case "hostname":
		h, err := os.Hostname()
		check(err)
		fmt.Println(h)
	case "pid":
		fmt.Println(os.Getpid())
	case "env":
		fmt.Println(os.Getenv(arg(0)))
	case "pwd":
		wd, err := os.Getwd()
		check(err)
		fmt.Println(wd)
	case "id":
		groups, err := os.Getgroups()
		check(err)
		sort.Ints(groups)
		fmt.Printf("uid=%d gid=%d groups=%v\n", os.Getuid(), os.Getgid(), groups)
	case "cat":
		data, err := os.ReadFile(arg(0))
		if err != nil {
			fmt.Println("error:", errno(err))
			return
		}
		fmt.Println(strings.TrimSpace(string(data)))
	case "size":
		data, err := os.ReadFile(arg(0))
		check(err)
		fmt.Println(len(data))
	case "write":
		if err := os.WriteFile(arg(0), []byte(arg(1)), 0o644); err != nil {
			fmt.Println("write failed:", errno(err))
			return
		}
		fmt.Println("write ok")
	case "exists":
		_, err := os.Lstat(arg(0))
		fmt.Println(err == nil)
	case "readlink":
		target, err := os.Readlink(arg(0))
		check(err)
		fmt.Println(target)
	case "ns":
		target, err := os.Readlink("/proc/self/ns/" + arg(0))
		check(err)
		fmt.Println(target)
	case "status": // a field of /proc/self/status
		f, err := os.Open("/proc/self/status")
		check(err)
		scanner := bufio.NewScanner(f)
		for scanner.Scan() {
			if k, v, _ := strings.Cut(scanner.Text(), ":"); k == arg(0) {
				fmt.Println(strings.TrimSpace(v))
			}
		}
	case "stdin":
		_, err := io.Copy(os.Stdout, os.Stdin)
		check(err)
	case "isatty":
		_, err := winsize()
		fmt.Println(err == nil)
	case "waitsize": // until the terminal is W H
		want := arg(0) + "x" + arg(1)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			ws, err := winsize()
			check(err)
			if got := fmt.Sprintf("%dx%d", ws[1], ws[0]); got == want {
				fmt.Println("size", got)
				return
			}
		}
		fmt.Println("size never", want)
	case "alloc": // MiB, touched, kept
		n, _ := strconv.Atoi(arg(0))
		var kept [][]byte
		for range n {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			kept = append(kept, b)
		}
		fmt.Println("allocated", len(kept))
	case "sleep":
		seconds, _ := strconv.Atoi(arg(0))
		time.Sleep(time.Duration(seconds) * time.Second)
	case "tick": // a line every 20ms, forever
		for i := 0; ; i++ {
			fmt.Println("tick", i)
			time.Sleep(20 * time.Millisecond)
		}
	case "exit":
		code, _ := strconv.Atoi(arg(0))
		os.Exit(code)
	default:
		fmt.Fprintln(os.Stderr, "toolbox: no command", name)
		os.Exit(127)
	}
}

// winsize is stdin's terminal size: rows, columns.
func winsize() ([4]uint16, error) {
	var ws [4]uint16
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGWINSZ, uintptr(unsafe.Pointer(&ws)))
	if e != 0 {
		return ws, e
	}
	return ws, nil
}

func errno(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		if e, ok := pe.Err.(syscall.Errno); ok {
			switch e {
			case syscall.EROFS:
				return "EROFS"
			case syscall.EACCES:
				return "EACCES"
			case syscall.ENOENT:
				return "ENOENT"
			}
		}
	}
	return err.Error()
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(126)
	}
}
