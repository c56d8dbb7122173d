package loadgen

import (
	"bytes"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of /proc's CPU times: 100 on
// every architecture Go supports.
const clockTicks = 100

// cpuSnapshot is the CPU time each process has used, read from /proc, and
// the machine's idle time: where the cores went between two snapshots.
type cpuSnapshot struct {
	at    time.Time
	procs map[int]procCPU
	idle  float64 // seconds, all cores
}

type procCPU struct {
	name    string
	seconds float64
}

// CPUShare is one process name's CPU seconds over a run.
type CPUShare struct {
	Name    string // the process's command name; "loadgen" for this process
	Seconds float64
}

// readCPU snapshots /proc; it returns nil where there is no /proc.
func readCPU() *cpuSnapshot {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	s := &cpuSnapshot{at: time.Now(), procs: make(map[int]procCPU)}
	self := os.Getpid()
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		name, secs, ok := procStat(pid)
		if !ok {
			continue
		}
		if pid == self {
			name = "loadgen"
		}
		s.procs[pid] = procCPU{name, secs}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		// cpu  user nice system idle iowait …
		line, _, _ := bytes.Cut(b, []byte("\n"))
		if f := strings.Fields(string(line)); len(f) > 5 && f[0] == "cpu" {
			idle, _ := strconv.ParseFloat(f[4], 64)
			iowait, _ := strconv.ParseFloat(f[5], 64)
			s.idle = (idle + iowait) / clockTicks
		}
	}
	return s
}

// procStat reads a process's command name and user plus system CPU
// seconds from /proc/PID/stat.
func procStat(pid int) (string, float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state … utime stime: comm may hold spaces, so split
	// after its closing parenthesis; utime and stime are fields 14 and 15.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 13 {
		return "", 0, false
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return "", 0, false
	}
	return string(b[open+1 : end]), (utime + stime) / clockTicks, true
}

// cpuSince returns the CPU seconds used since before, summed by process
// name, largest first, then "idle" for the machine's idle cores, and the
// core-seconds the interval held. Processes that ended in between are
// not counted.
func cpuSince(before *cpuSnapshot) ([]CPUShare, float64) {
	after := readCPU()
	if before == nil || after == nil {
		return nil, 0
	}
	by := make(map[string]float64)
	for pid, p := range after.procs {
		used := p.seconds
		if b, ok := before.procs[pid]; ok && b.name == p.name {
			used -= b.seconds
		}
		if used > 0 {
			by[p.name] += used
		}
	}
	var out []CPUShare
	for name, secs := range by {
		out = append(out, CPUShare{name, secs})
	}
	slices.SortFunc(out, func(a, b CPUShare) int {
		if a.Seconds != b.Seconds {
			if a.Seconds > b.Seconds {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	if len(out) > 6 {
		var rest float64
		for _, s := range out[6:] {
			rest += s.Seconds
		}
		out = append(out[:6], CPUShare{"other", rest})
	}
	out = append(out, CPUShare{"idle", after.idle - before.idle})
	return out, after.at.Sub(before.at).Seconds() * float64(runtime.NumCPU())
}
