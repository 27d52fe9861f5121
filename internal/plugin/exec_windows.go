package plugin

import "os"

// forwardedSignals are the signals exec passes on to its command (Windows has Ctrl-C only).
var forwardedSignals = []os.Signal{os.Interrupt}
