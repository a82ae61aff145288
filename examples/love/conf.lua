-- LÖVE's configuration of the example game (main.lua).
function love.conf(t)
  t.identity = "aliocr-example"
  t.window.title = "aliocr: 20 images read in one frame"
  t.window.width, t.window.height = 800, 600
  t.modules.audio, t.modules.sound, t.modules.joystick, t.modules.physics = false, false, false, false
end
