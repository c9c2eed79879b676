# Godot 4: fetch a sprite sheet and its TexturePacker atlas from ddpm-serve, and show the sprites.
#
#   ddpm-serve                      # on the development machine: http://127.0.0.1:8000
#   Attach this script to a Node2D; run the scene. Each sprite appears as a Sprite2D (AtlasTexture).
#
# One POST with "format": "atlas" returns {"image": <the sheet PNG, base64>, "atlas": <TexturePacker JSON
# (hash)>, "record": <generation parameters>}: the same sheet `ddpm-run --atlas` writes, byte for byte.
extends Node2D

@export var server_url := "http://127.0.0.1:8000"
@export var count := 9
@export var context := "food"          # face, person, animal, food, object, random, none
@export var seed := 1
@export var background := "transparent"
@export var sampler := "dpmpp-2m-sde"   # a 10-step solver (the server's default if left empty)
@export var steps := 10

var _http: HTTPRequest

func _ready() -> void:
	_http = HTTPRequest.new()
	_http.timeout = 120.0
	add_child(_http)
	_http.request_completed.connect(_on_request_completed)
	var settings := {"n": count, "context": context, "seed": seed, "background": background, "scale": 1,
			"format": "atlas"}
	if sampler != "":
		settings["sampler"] = sampler
		settings["steps"] = steps
	var body := JSON.stringify(settings)
	var err := _http.request(server_url + "/v1/generate", ["Content-Type: application/json"],
			HTTPClient.METHOD_POST, body)
	if err != OK:
		push_error("ddpm-serve request could not start: %s" % err)

func _on_request_completed(result: int, code: int, headers: PackedStringArray, body: PackedByteArray) -> void:
	if result != HTTPRequest.RESULT_SUCCESS:
		push_error("ddpm-serve unreachable (result %d)" % result)
		return
	var reply = JSON.parse_string(body.get_string_from_utf8())
	if code != 200:
		# 422: the one-line reason for bad settings; 429: busy, retry after the Retry-After header
		push_error("ddpm-serve %d: %s" % [code, reply.get("error", "") if reply is Dictionary else ""])
		return
	var image := Image.new()
	if image.load_png_from_buffer(Marshalls.base64_to_raw(reply["image"])) != OK:
		push_error("the sheet is not a PNG")
		return
	var sheet := ImageTexture.create_from_image(image)
	var frames: Dictionary = reply["atlas"]["frames"]
	var x := 0.0
	for name in frames:
		var f: Dictionary = frames[name]["frame"]
		var region := AtlasTexture.new()
		region.atlas = sheet
		region.region = Rect2(f["x"], f["y"], f["w"], f["h"])
		var sprite := Sprite2D.new()
		sprite.name = name
		sprite.texture = region
		sprite.texture_filter = CanvasItem.TEXTURE_FILTER_NEAREST   # pixel art: no smoothing
		sprite.scale = Vector2(4, 4)
		sprite.position = Vector2(40 + x, 80)
		add_child(sprite)
		x += f["w"] * 4 + 8
	print("ddpm-serve: %d sprites, seed %s" % [frames.size(), reply["record"]["seed"]])
