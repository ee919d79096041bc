// Command zipdir writes a zip of a folder with Unix modes kept, so the
// Functions host finds the handler binary executable after a zip deploy.
//
//	go run ./handler/tools/zipdir dist/app dist/app.zip
package main

import (
	"fmt"
	"os"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/tools/zipdir/zipdir"
)

const usage = "usage: zipdir <folder> <out.zip>\nexit status: 0 written, 1 could not write, 2 usage error"

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "-h" || os.Args[1] == "-help" || os.Args[1] == "--help") {
		fmt.Println(usage)
		return
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err := zipdir.Write(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "zipdir:", err)
		os.Exit(1)
	}
}
