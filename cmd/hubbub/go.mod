module github.com/hubbub-chat/hubbub/cmd/hubbub

go 1.26.8

require github.com/hubbub-chat/hubbub/shared v0.0.0

replace github.com/hubbub-chat/hubbub/shared => ../../shared
