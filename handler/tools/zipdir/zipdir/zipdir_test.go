package zipdir_test

import (
	"archive/zip"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/tools/zipdir/zipdir"
)

func TestKeepsTheExecutableBit(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "Reconcile"), 0o755)
	os.WriteFile(filepath.Join(dir, "handler"), []byte("#!bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "Reconcile", "function.json"), []byte("{}"), 0o644)
	out := filepath.Join(t.TempDir(), "app.zip")
	if err := zipdir.Write(dir, out); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(out)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got := map[string]os.FileMode{}
	for _, f := range zr.File {
		got[f.Name] = f.Mode().Perm()
		if f.Name == "handler" {
			rc, _ := f.Open()
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != "#!bin" {
				t.Errorf("content = %q", b)
			}
		}
	}
	if got["handler"] != 0o755 || got["Reconcile/function.json"] != 0o644 || len(got) != 2 {
		t.Fatalf("entries = %v", got)
	}
}
