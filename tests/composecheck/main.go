// Loads compose.yaml with compose-go, the loader Docker Compose itself uses (schema validation,
// interpolation, anchors), and prints the services as JSON: the tests check it without Docker.
// Arguments after the file are profiles to enable (a service with a profile is left out without).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	// The process environment interpolates ${...}, as `docker compose` does; profiles
	// (os.Args[2:]) enable the services that need one.
	opts, err := cli.NewProjectOptions(
		[]string{os.Args[1]}, cli.WithName("clickpulse"), cli.WithOsEnv,
		cli.WithProfiles(os.Args[2:]),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := json.Marshal(project.Services)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
