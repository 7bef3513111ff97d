// Command baseline is a size probe: a module that decodes JSON configuration and nothing
// else, the floor under ../jwtverify and ../golangjwt (docs/verifier.md, "Module size").
package main

import (
	"encoding/json"
	"os"
)

func main() {}

func init() {
	var cfg map[string]any
	if err := json.Unmarshal([]byte(os.Getenv("JWT_CONFIG")), &cfg); err != nil {
		println(err.Error())
		return
	}
	println(len(cfg), len(os.Getenv("TOKEN")))
}
