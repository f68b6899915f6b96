// Package mlog stands in for monis.app/mlog, which the module proxy here refuses (403): the Azure Workload
// Identity webhook only logs through it; nothing its mutation decides depends on it.
package mlog

type LogLevel string

const (
	LevelAll     LogLevel = "all"
	LevelTrace   LogLevel = "trace"
	LevelDebug   LogLevel = "debug"
	LevelInfo    LogLevel = "info"
	LevelWarning LogLevel = "warning"
)

// Enabled answers as the webhook's default level (info) would.
func Enabled(level LogLevel) bool { return level == LevelInfo || level == LevelWarning }

type Logger struct{}

func New() Logger                            { return Logger{} }
func (l Logger) WithName(string) Logger      { return l }
func (l Logger) WithValues(...any) Logger    { return l }
func (l Logger) Error(string, error, ...any) {}
func (l Logger) Info(string, ...any)         {}
