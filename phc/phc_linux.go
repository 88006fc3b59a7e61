package phc

import (
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// FindByInterface returns the path of the PTP hardware clock of network
// interface ifname (/dev/ptpN), as its driver reports it through ethtool's
// ETHTOOL_GET_TS_INFO.
func FindByInterface(ifname string) (string, error) {
	if ifname == "" || len(ifname) >= unix.IFNAMSIZ {
		return "", fmt.Errorf("phc: invalid interface name %q", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("phc: %s: socket for ethtool: %w", ifname, err)
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolTsInfo(fd, ifname)
	if err != nil {
		if errors.Is(err, unix.ENODEV) {
			return "", fmt.Errorf("phc: %s: no such network interface", ifname)
		}
		return "", fmt.Errorf("phc: %s: ethtool timestamping info: %w", ifname, err)
	}
	if info.Phc_index < 0 {
		return "", fmt.Errorf("phc: %s has no PTP hardware clock", ifname)
	}
	return fmt.Sprintf("/dev/ptp%d", info.Phc_index), nil
}

// extendedSamples is how many bracketed readings one PTP_SYS_OFFSET_EXTENDED
// takes; the narrowest is kept.
const extendedSamples = 9

// scaledPPMPerPPB converts ppb to the timex freq field's unit (ppm with a
// 16-bit binary fraction).
const scaledPPMPerPPB = 65.536

// device is a /dev/ptpN opened for reading and adjusting: ioctls on its file
// descriptor and clock_adjtime on the clock id derived from it.
type device struct {
	file    *os.File
	fd      int
	clockID int32
	maxAdj  float64
	chain   *offsetChain
}

// Open opens the PTP hardware clock at path (such as /dev/ptp0) for reading
// and adjusting. It fails with an error naming path when the file is
// missing or is not a PTP clock.
func Open(path string) (Device, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("phc: %w", err) // the *PathError names the device
	}
	fd := int(f.Fd())
	caps, err := unix.IoctlPtpClockGetcaps(fd)
	if err != nil {
		f.Close()
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("phc: %s is not a PTP hardware clock (PTP_CLOCK_GETCAPS: %w)", path, err)
		}
		return nil, fmt.Errorf("phc: %s: PTP_CLOCK_GETCAPS: %w", path, err)
	}
	d := &device{file: f, fd: fd, clockID: unix.FdToClockID(fd), maxAdj: float64(caps.Max_adj)}
	if d.maxAdj <= 0 {
		d.maxAdj = 500_000 // what the kernel's adjtimex allows the system clock
	}
	d.chain = &offsetChain{name: path, readers: []offsetReader{d.precise, d.extended, d.basic}}
	return d, nil
}

func (d *device) Name() string    { return d.file.Name() }
func (d *device) MaxAdj() float64 { return d.maxAdj }
func (d *device) Close() error    { return d.file.Close() }

func (d *device) Time() (time.Time, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(d.clockID, &ts); err != nil {
		return time.Time{}, fmt.Errorf("phc: %s: clock_gettime: %w", d.Name(), err)
	}
	return time.Unix(ts.Unix()), nil
}

func (d *device) Offset() (Offset, error) { return d.chain.offset() }

// unsupported tells an ioctl the driver or kernel lacks from other failures.
func unsupported(what string, err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%s: %w: %w", what, ErrNotSupported, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func ptpTime(t unix.PtpClockTime) time.Time { return time.Unix(t.Sec, int64(t.Nsec)) }

func (d *device) precise() (Offset, error) {
	p, err := unix.IoctlPtpSysOffsetPrecise(d.fd)
	if err != nil {
		return Offset{}, unsupported("PTP_SYS_OFFSET_PRECISE", err)
	}
	return preciseOffset(p), nil
}

// preciseOffset reads a cross-timestamp: both clocks at one instant.
func preciseOffset(p *unix.PtpSysOffsetPrecise) Offset {
	sys := ptpTime(p.Realtime)
	return Offset{Offset: ptpTime(p.Device).Sub(sys), System: sys, Method: MethodPrecise}
}

func (d *device) extended() (Offset, error) {
	e, err := unix.IoctlPtpSysOffsetExtended(d.fd, extendedSamples)
	if err != nil {
		return Offset{}, unsupported("PTP_SYS_OFFSET_EXTENDED", err)
	}
	return extendedOffset(e)
}

// extendedOffset keeps the narrowest of the bracketed readings
// (system, device, system) and refers the device reading to the midpoint of
// its bracket.
func extendedOffset(e *unix.PtpSysOffsetExtended) (Offset, error) {
	n := int(e.Samples)
	if n < 1 || n > len(e.Ts) {
		return Offset{}, fmt.Errorf("PTP_SYS_OFFSET_EXTENDED: %d samples", e.Samples)
	}
	var best Offset
	for i := range n {
		before, dev, after := ptpTime(e.Ts[i][0]), ptpTime(e.Ts[i][1]), ptpTime(e.Ts[i][2])
		width := after.Sub(before)
		if width < 0 {
			continue // the system clock was stepped during the reading
		}
		mid := before.Add(width / 2)
		if best.Method == 0 || width < best.Delay {
			best = Offset{Offset: dev.Sub(mid), Delay: width, System: mid, Method: MethodExtended}
		}
	}
	if best.Method == 0 {
		return Offset{}, errors.New("PTP_SYS_OFFSET_EXTENDED: the system clock went backwards during every sample")
	}
	return best, nil
}

func (d *device) basic() (Offset, error) {
	var ts unix.Timespec
	before := time.Now()
	err := unix.ClockGettime(d.clockID, &ts)
	after := time.Now()
	if err != nil {
		return Offset{}, fmt.Errorf("clock_gettime: %w", err)
	}
	width := after.Sub(before) // monotonic: never negative
	mid := before.Add(width / 2).Round(0)
	return Offset{Offset: time.Unix(ts.Unix()).Sub(mid), Delay: width, System: mid, Method: MethodBasic}, nil
}

func (d *device) Frequency() (float64, error) {
	var tx unix.Timex
	if _, err := unix.ClockAdjtime(d.clockID, &tx); err != nil {
		return 0, fmt.Errorf("phc: %s: read frequency: %w", d.Name(), err)
	}
	return float64(tx.Freq) / scaledPPMPerPPB, nil
}

func (d *device) AdjFreq(ppb float64) error {
	if math.IsNaN(ppb) || math.Abs(ppb) > d.maxAdj {
		return fmt.Errorf("phc: %s: frequency %.3f ppb is beyond the device's ±%.0f ppb", d.Name(), ppb, d.maxAdj)
	}
	var tx unix.Timex
	tx.Modes = unix.ADJ_FREQUENCY
	setInt(&tx.Freq, int64(math.Round(ppb*scaledPPMPerPPB)))
	if _, err := unix.ClockAdjtime(d.clockID, &tx); err != nil {
		return fmt.Errorf("phc: %s: set frequency %.3f ppb: %w", d.Name(), ppb, err)
	}
	return nil
}

func (d *device) Step(step time.Duration) error {
	sec, nsec := int64(step/time.Second), int64(step%time.Second)
	if nsec < 0 { // the kernel wants 0 <= nsec < 1e9
		sec--
		nsec += int64(time.Second)
	}
	var tx unix.Timex
	tx.Modes = unix.ADJ_SETOFFSET | unix.ADJ_NANO
	if !setInt(&tx.Time.Sec, sec) {
		return fmt.Errorf("phc: %s: step %v is too large for this platform", d.Name(), step)
	}
	setInt(&tx.Time.Usec, nsec) // nanoseconds with ADJ_NANO
	if _, err := unix.ClockAdjtime(d.clockID, &tx); err != nil {
		return fmt.Errorf("phc: %s: step %v: %w", d.Name(), step, err)
	}
	return nil
}

// setInt stores v in a timex field, whose width depends on the platform. It
// reports false if v does not fit.
func setInt[T ~int32 | ~int64](p *T, v int64) bool {
	*p = T(v)
	return int64(*p) == v
}
