// Command inference is the fake inference server of the simulated site. It serves /health (liveness, startup)
// and /health/ready (readiness) on $FORGE_PORT (the stack's inference-config key; else $PORT, else 8000) after
// $MODEL_LOAD_SECONDS, and can be told to misbehave for the
// probe drills, at start ($FAKE_INFERENCE_MODE) or at run time (POST /admin/<mode>):
//
//	ok       both endpoints answer 200 once the model is loaded
//	hang     /health and /health/ready never answer (the liveness probe times out)
//	fail     both answer 500
//	unready  /health answers 200, /health/ready 503 (the pod leaves the Service but is not restarted)
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

type server struct {
	mu       sync.Mutex
	mode     string
	loadedAt time.Time
}

var modes = map[string]bool{"ok": true, "hang": true, "fail": true, "unready": true}

func (s *server) state() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode, !time.Now().Before(s.loadedAt)
}

func (s *server) probe(ready bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mode, loaded := s.state()
		switch {
		case !loaded:
			http.Error(w, "loading model", http.StatusServiceUnavailable)
		case mode == "hang":
			<-r.Context().Done() // the client (the kubelet's probe) gives up at its timeoutSeconds
		case mode == "fail":
			http.Error(w, "failed", http.StatusInternalServerError)
		case mode == "unready" && ready:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
		}
	}
}

func (s *server) admin(w http.ResponseWriter, r *http.Request) {
	mode := r.PathValue("mode")
	if !modes[mode] {
		http.Error(w, "unknown mode "+mode, http.StatusNotFound)
		return
	}
	s.mu.Lock()
	s.mode = mode
	s.mu.Unlock()
	log.Printf("mode -> %s", mode)
	fmt.Fprintln(w, mode)
}

func main() {
	port := envOr("FORGE_PORT", envOr("PORT", "8000"))
	delay, err := strconv.ParseFloat(envOr("MODEL_LOAD_SECONDS", "0"), 64)
	if err != nil || delay < 0 {
		log.Fatalf("MODEL_LOAD_SECONDS: want seconds >= 0, got %q", os.Getenv("MODEL_LOAD_SECONDS"))
	}
	mode := envOr("FAKE_INFERENCE_MODE", "ok")
	if !modes[mode] {
		log.Fatalf("FAKE_INFERENCE_MODE: unknown mode %q", mode)
	}
	s := &server{mode: mode, loadedAt: time.Now().Add(time.Duration(delay * float64(time.Second)))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.probe(false))
	mux.HandleFunc("GET /health/ready", s.probe(true))
	mux.HandleFunc("POST /admin/{mode}", s.admin)
	log.Printf("fake inference server on :%s, model load %.1fs, mode %s", port, delay, mode)
	log.Fatal(http.ListenAndServe(":"+port, mux))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
