package servers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
)

// softHSMModules are where Debian (and others) put SoftHSM2's PKCS#11 module.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// SoftHSMToken makes a fresh SoftHSM2 token labelled label with user PIN
// pin, its files under dir, and returns the module path. It sets
// SOFTHSM2_CONF for this process, which the module reads when loaded, so one
// process uses one token directory. As root on Debian it installs the
// softhsm2 package when the module is missing.
func SoftHSMToken(ctx context.Context, log *slog.Logger, dir, label, pin string) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	module := findSoftHSM()
	if module == "" {
		if err := aptInstall(ctx, log, "softhsm2"); err != nil {
			return "", fmt.Errorf("harness: SoftHSM2 is not installed and could not be: %w", err)
		}
		if module = findSoftHSM(); module == "" {
			return "", errors.New("harness: softhsm2 installed but its module was not found")
		}
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", fmt.Errorf("harness: softhsm dir: %w", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return "", fmt.Errorf("harness: softhsm conf: %w", err)
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin+"-so")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("harness: softhsm2-util --init-token: %w: %s", err, tail(out, 1000))
	}
	log.Info("softhsm: token ready", "label", label, "module", module)
	return module, nil
}

func findSoftHSM() string {
	for _, m := range softHSMModules {
		if _, err := os.Stat(m); err == nil {
			return m
		}
	}
	return ""
}

// aptInstall installs Debian packages as root.
func aptInstall(ctx context.Context, log *slog.Logger, pkgs ...string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root; install %v", pkgs)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("apt-get not found; install %v", pkgs)
	}
	log.Info("installing Debian packages (one time)", "packages", pkgs)
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, pkgs...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %v: %w: %s", args, err, tail(out, 2000))
		}
	}
	return nil
}
