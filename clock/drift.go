package clock

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/timed-project/timed/internal/atomicfile"
)

// maxDriftPPM bounds believable drift-file values: no oscillator timed can
// correct is off by more than 10 %.
const maxDriftPPM = 100_000

// maxDriftFileSize is more than a drift file ever needs.
const maxDriftFileSize = 4096

// ReadDrift reads a drift file: one line "ppm uncertainty", the
// oscillator's frequency error and its uncertainty (one sigma), both in ppm.
// A missing file gives an error matching fs.ErrNotExist.
func ReadDrift(path string) (ppm, uncertaintyPPM float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("clock: drift file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDriftFileSize+1))
	if err != nil {
		return 0, 0, fmt.Errorf("clock: drift file %s: %w", path, err)
	}
	ppm, uncertaintyPPM, err = parseDrift(data)
	if err != nil {
		return 0, 0, fmt.Errorf("clock: drift file %s: %w", path, err)
	}
	return ppm, uncertaintyPPM, nil
}

// parseDrift parses the contents of a drift file.
func parseDrift(data []byte) (ppm, unc float64, err error) {
	if len(data) > maxDriftFileSize {
		return 0, 0, fmt.Errorf("longer than %d bytes", maxDriftFileSize)
	}
	text := strings.TrimRight(string(data), " \t\r\n")
	if strings.ContainsAny(text, "\n\r") {
		return 0, 0, errors.New("more than one line")
	}
	fields := strings.Fields(text)
	if len(fields) != 2 {
		return 0, 0, fmt.Errorf("want two numbers \"ppm uncertainty\", found %d fields", len(fields))
	}
	if ppm, err = parseDriftValue("frequency", fields[0]); err != nil {
		return 0, 0, err
	}
	if unc, err = parseDriftValue("uncertainty", fields[1]); err != nil {
		return 0, 0, err
	}
	if unc < 0 {
		return 0, 0, fmt.Errorf("negative uncertainty %g ppm", unc)
	}
	return ppm, unc, nil
}

func parseDriftValue(what, s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a number", what, s)
	}
	if err := checkDriftValue(what, v); err != nil {
		return 0, err
	}
	return v, nil
}

func checkDriftValue(what string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s %v is not a finite number", what, v)
	}
	if math.Abs(v) > maxDriftPPM {
		return fmt.Errorf("%s %g ppm is beyond ±%d ppm", what, v, maxDriftPPM)
	}
	return nil
}

// WriteDrift writes a drift file atomically: to a temporary file in the
// same directory, synced, then renamed over path, then the directory
// synced. A crash leaves either the old file or the new one.
func WriteDrift(path string, ppm, uncertaintyPPM float64) error {
	if err := checkDriftValue("frequency", ppm); err != nil {
		return fmt.Errorf("clock: drift file %s: %w", path, err)
	}
	if err := checkDriftValue("uncertainty", uncertaintyPPM); err != nil || uncertaintyPPM < 0 {
		if err == nil {
			err = fmt.Errorf("negative uncertainty %g ppm", uncertaintyPPM)
		}
		return fmt.Errorf("clock: drift file %s: %w", path, err)
	}
	line := strconv.FormatFloat(ppm, 'f', 6, 64) + " " + strconv.FormatFloat(uncertaintyPPM, 'f', 6, 64) + "\n"
	if err := atomicfile.Write(path, []byte(line), 0o644); err != nil {
		return fmt.Errorf("clock: drift file: %w", err)
	}
	return nil
}
