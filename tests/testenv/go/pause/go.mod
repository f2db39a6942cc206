// Wrapper module: the pause program of the real node's sandbox image (main.go); no dependencies.
module sentinel.local/testenv/pause

go 1.24.0
